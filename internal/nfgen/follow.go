package nfgen

// Follow runs commit, an nf_tables transaction of set elements only (a
// guard's lease or forgotten ports), and says whether the rules, which were
// whole at generation from, are still whole after it: the generation was
// from just before commit and is from+1 just after. The kernel moves the
// generation by exactly one per committed transaction, whoever commits it,
// so from+1 means commit's was the only one in between, and a set's
// elements are no rule. commit reports whether it committed a transaction:
// one that committed nothing (no port gone, no guard table) did not move the
// generation, so from+1 after it is another program's, which may have
// flushed the rules. to is that generation; ok false (another program's
// transaction between, nothing committed, a generation unknown or from
// unknown, 0) proves nothing and costs only the next warm run. Its error is
// commit's.
func Follow(from uint32, commit func() (committed bool, err error)) (to uint32, ok bool, err error) {
	if from == 0 {
		_, err := commit()
		return 0, false, err
	}
	if before, err := Generation(); err != nil || before != from {
		_, err := commit()
		return 0, false, err
	}
	committed, err := commit()
	if err != nil || !committed {
		return 0, false, err
	}
	after, err := Generation()
	// The kernel skips 0 when its counter wraps: from+1 is then 1, not
	// taken here, and the next cold run records the generation again.
	if err != nil || after != from+1 || after == 0 {
		return 0, false, nil
	}
	return after, true, nil
}

package ops

// A network whose section of the file is wrong cannot come up, while the
// file's other networks can: status marks it broken and doctor reports it,
// each with the file's FILE:LINE error, and both exit non-zero for it.

// brokenFinding is doctor's finding for a network whose section is wrong,
// or nothing when it is right.
func (h Host) brokenFinding(name string) (Finding, bool) {
	err := h.File.Broken[name]
	if err == nil {
		return Finding{}, false
	}
	return Finding{Network: name, Problem: "its section of the configuration is wrong: no VM can start on it",
		Evidence: err.Error(), Fix: "correct that line of " + h.File.Path}, true
}

// upBroken: a network whose section went wrong after it was set up is still
// up as its record says, with its bridge, rules and daemon; doctor checks
// those from the record, as for any network that is up, beside reporting the
// section (their repair waits for the section to be right: heal says so).
func (h Host) upBroken(name string) bool {
	_, up, err := h.Dir.Load(name)
	return err == nil && up
}

// AnyBroken reports whether one of the networks s shows is broken.
func (s Status) AnyBroken() bool {
	for _, n := range s.Networks {
		if n.Broken != "" {
			return true
		}
	}
	return false
}

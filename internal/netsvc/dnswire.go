package netsvc

import (
	"encoding/binary"
	"errors"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS messages on the wire. The forwarder reads of a query only its header,
// its first question and its OPT record, and of an upstream's answer only
// what matching and caching need: the record headers (their TTLs, where
// those sit in the message) and an SOA's minimum. Answers travel as the
// bytes the upstream sent, less their OPT record; a cached one is copied
// and its TTLs aged in place. Only an answer longer than its client accepts
// is decoded whole (truncate). golang.org/x/net/dns/dnsmessage parses and
// builds them: github.com/miekg/dns linked crypto/tls and x509 into the
// daemon, a megabyte of its resident memory.

const (
	headerLen = 12
	// minUDPSize is what every client accepts over UDP (RFC 1035 4.2.1).
	minUDPSize = 512
	// optLen is an OPT record without options: root name, type, class
	// (the UDP size), TTL (extended rcode, version, flags), RDLENGTH.
	optLen = 11
	// maxKeyLen bounds a cache key: a name (at most 255 bytes in text
	// form) and the type, class and flags of keyOf.
	maxKeyLen = 255 + 5
)

var (
	errNotAnswer = errors.New("not an answer to one question")
	errBadLabel  = errors.New("bad name label")
	// errRecordLength: a record's data runs past the message's end.
	errRecordLength = errors.New("record longer than the message")
)

// dnsQuery is what the forwarder reads of a query.
type dnsQuery struct {
	hdr dnsmessage.Header
	q   dnsmessage.Question // the first question, when nq > 0
	nq  int                 // questions in the message
	// EDNS (RFC 6891), from the OPT record.
	edns    bool
	opts    int // OPT records: more than one is a format error
	version uint8
	do      bool
	size    uint16 // the UDP payload size the client accepts
	hops    int    // kvmnet forwarders passed (hopOption)
	options []dnsmessage.Option
}

// parseQuery reads a query; an error means it is not DNS. The answer and
// authority sections, which a query does not use, are only checked.
func parseQuery(b []byte) (*dnsQuery, error) {
	var p dnsmessage.Parser
	hdr, err := p.Start(b)
	if err != nil {
		return nil, err
	}
	r := &dnsQuery{hdr: hdr, nq: int(binary.BigEndian.Uint16(b[4:]))}
	if r.nq > 0 {
		if r.q, err = p.Question(); err != nil {
			return nil, err
		}
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, err
	}
	if err := p.SkipAllAnswers(); err != nil {
		return nil, err
	}
	if err := p.SkipAllAuthorities(); err != nil {
		return nil, err
	}
	for {
		h, err := p.AdditionalHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return r, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Type != dnsmessage.TypeOPT {
			if err := p.SkipAdditional(); err != nil {
				return nil, err
			}
			continue
		}
		opt, err := p.OPTResource()
		if err != nil {
			return nil, err
		}
		r.readOPT(h, opt)
	}
}

// readOPT takes the fields of an OPT record: the client's UDP size, the
// version and DO bit (RFC 6891 6.1.3), the hop count of hopOption, and the
// other options, which are forwarded.
func (r *dnsQuery) readOPT(h dnsmessage.ResourceHeader, opt dnsmessage.OPTResource) {
	r.edns = true
	r.opts++
	r.size = uint16(h.Class)
	r.version = uint8(h.TTL >> 16)
	r.do = h.TTL&0x8000 != 0
	r.options = r.options[:0]
	for _, o := range opt.Options {
		if o.Code == hopOption {
			if len(o.Data) == 1 {
				r.hops = int(o.Data[0])
			}
			continue
		}
		r.options = append(r.options, o)
	}
}

// udpSize is the largest UDP answer the client accepts.
func (r *dnsQuery) udpSize() int {
	if r.edns && r.size > minUDPSize {
		return int(r.size)
	}
	return minUDPSize
}

// appendKey appends the cache key of r to b: the question's name in lower
// case (RFC 4343), its type and class, and DO and CD, which change what an
// upstream returns.
func (r *dnsQuery) appendKey(b []byte) []byte {
	for _, c := range r.q.Name.Data[:r.q.Name.Length] {
		b = append(b, lowerASCII(c))
	}
	var flags byte
	if r.do {
		flags |= 1
	}
	if r.hdr.CheckingDisabled {
		flags |= 2
	}
	return append(b, byte(r.q.Type>>8), byte(r.q.Type), byte(r.q.Class>>8), byte(r.q.Class), flags)
}

// setCase writes the letters of the question's name n over those of the
// question in b, a cached answer to the same name in another case: a guest
// that varies its names' case to spot forged answers (0x20, as unbound's
// use-caps-for-id) must get its own back. b's question, at the header's end,
// is never compressed, and its labels are n's (a dot in a label does not
// parse).
func setCase(b []byte, n dnsmessage.Name) {
	name := n.Data[:n.Length]
	for i, j := headerLen, 0; i < len(b) && b[i] != 0 && b[i]&0xC0 == 0; {
		l := int(b[i])
		if i+1+l > len(b) || j+l > len(name) {
			return
		}
		copy(b[i+1:i+1+l], name[j:j+l])
		i, j = i+1+l, j+l+1
	}
}

// dnsReply is an answer on its way to a client: the message without OPT
// record, which finish adds when the query had one.
type dnsReply struct {
	b []byte
	// ext is the upper 8 bits of an extended rcode (BADVERS), which only
	// the OPT record carries.
	ext uint8
}

// finish makes rep the client's answer: its ID, cut to what the client
// accepts (TC set if records had to go), and an OPT record of ours
// when, and only when, the query had one (RFC 6891 7). rep.b is the caller's
// to give away.
func (r *dnsQuery) finish(rep dnsReply, proto string) []byte {
	b := rep.b
	binary.BigEndian.PutUint16(b, r.hdr.ID)
	limit := 0xffff // what TCP's length field holds
	if proto == "udp" {
		limit = r.udpSize()
	}
	if r.edns {
		limit -= optLen
	}
	if len(b) > limit {
		b = truncate(b, limit)
	}
	if r.edns {
		b = appendOPT(b, r.do, rep.ext)
	}
	return b
}

// appendOPT appends an OPT record with the UDP size we accept, the upper
// bits of the rcode and the DO bit, and counts it.
func appendOPT(b []byte, do bool, ext uint8) []byte {
	var flags byte
	if do {
		flags = 0x80
	}
	b = append(b, 0, byte(dnsmessage.TypeOPT>>8), byte(dnsmessage.TypeOPT), byte(ednsSize>>8), byte(ednsSize&0xff),
		ext, 0, flags, 0, 0, 0)
	binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
	return b
}

// truncate returns b cut to at most limit bytes, compressed, keeping the
// records that fit in order (answers, authority, additional) and setting TC
// when some did not: what miekg/dns's Msg.Truncate did. It is the slow path
// (a message decoded whole and packed again), for the few answers too large
// for their client.
func truncate(b []byte, limit int) []byte {
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil || len(m.Questions) > 1 {
		return headerOnly(b, limit)
	}
	an, ns, ar := m.Answers, m.Authorities, m.Additionals
	total := len(an) + len(ns) + len(ar)
	pack := func(k int) []byte {
		m.Answers = an[:min(k, len(an))]
		m.Authorities = ns[:min(max(k-len(an), 0), len(ns))]
		m.Additionals = ar[:min(max(k-len(an)-len(ns), 0), len(ar))]
		out, err := m.AppendPack(make([]byte, 0, limit+optLen))
		if err != nil {
			return nil
		}
		return out
	}
	if out := pack(total); out != nil && len(out) <= limit {
		return out
	}
	m.Header.Truncated = true
	// The packed length grows with k: find the most records that fit.
	lo, hi := 0, total-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if out := pack(mid); out != nil && len(out) <= limit {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if out := pack(lo); out != nil && len(out) <= limit {
		return out
	}
	return headerOnly(b, limit)
}

// headerOnly is b's header and question with TC set and no records, or the
// header alone if the question does not fit.
func headerOnly(b []byte, limit int) []byte {
	out := make([]byte, headerLen, limit+optLen)
	copy(out, b[:headerLen])
	out[2] |= 0x02 // TC
	clear(out[4:])
	if n, err := nameLen(b, headerLen); err == nil && binary.BigEndian.Uint16(b[4:]) > 0 && headerLen+n+4 <= min(len(b), limit) {
		out = append(out, b[headerLen:headerLen+n+4]...)
		out[5] = 1
	}
	return out
}

// nameLen is how many bytes the (possibly compressed) name at b[off:] takes.
func nameLen(b []byte, off int) (int, error) {
	for i := off; i < len(b); {
		switch c := b[i]; {
		case c == 0:
			return i + 1 - off, nil
		case c&0xC0 == 0xC0:
			return i + 2 - off, nil
		case c&0xC0 != 0:
			return 0, errBadLabel
		default:
			i += 1 + int(c)
		}
	}
	return 0, errBadLabel
}

// dnsAnswer is an upstream's answer, as the forwarder keeps it.
type dnsAnswer struct {
	b    []byte // a copy of the message without its OPT record
	hdr  dnsmessage.Header
	q    dnsmessage.Question
	ttls []uint16 // where each record's TTL sits in b
	// ttl is how long it may be cached; 0: not at all.
	ttl time.Duration
}

// parseAnswer reads an upstream's answer to one question. It checks every
// record, and returns an error for anything that is not such an answer.
func parseAnswer(msg []byte) (*dnsAnswer, error) {
	var p dnsmessage.Parser
	hdr, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	if !hdr.Response || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return nil, errNotAnswer
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	if err := p.SkipAllQuestions(); err != nil { // moves on to the answers
		return nil, err
	}
	records := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	a := &dnsAnswer{hdr: hdr, q: q, ttls: make([]uint16, 0, min(records, len(msg)/optLen))}
	w := answerWalk{least: uint32(maxCacheTTL / time.Second), optStart: -1}
	n, _ := nameLen(msg, headerLen) // the parser read it
	w.off = headerLen + n + 4
	if err := w.records(&p, msg, a); err != nil {
		return nil, err
	}
	a.ttl = w.cacheTTL(hdr)
	switch {
	case w.opts == 0:
		a.b = append([]byte(nil), msg[:w.off]...)
	case w.opts == 1 && w.optEnd == w.off: // the usual place: last
		a.b = append([]byte(nil), msg[:w.optStart]...)
		binary.BigEndian.PutUint16(a.b[10:], binary.BigEndian.Uint16(a.b[10:])-1)
	default: // elsewhere: records after it may point into what would move
		return withoutOPT(msg)
	}
	return a, nil
}

// withoutOPT decodes msg whole, drops its OPT records and reads it again.
func withoutOPT(msg []byte) (*dnsAnswer, error) {
	var m dnsmessage.Message
	if err := m.Unpack(msg); err != nil {
		return nil, err
	}
	ar := m.Additionals[:0]
	for _, rr := range m.Additionals {
		if rr.Header.Type != dnsmessage.TypeOPT {
			ar = append(ar, rr)
		}
	}
	m.Additionals = ar
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	return parseAnswer(b)
}

// answerWalk is what parseAnswer learns going through the records.
type answerWalk struct {
	off              int    // where the next record starts
	answers          int    // records in the answer section
	least            uint32 // the least TTL of the answer and authority records
	soa              bool
	soaTTL, soaMin   uint32
	opts             int
	optStart, optEnd int
}

// records goes through the three sections of records.
func (w *answerWalk) records(p *dnsmessage.Parser, msg []byte, a *dnsAnswer) error {
	for sec := range 3 {
		for {
			h, err := recordHeader(p, sec)
			if errors.Is(err, dnsmessage.ErrSectionDone) {
				break
			}
			if err != nil {
				return err
			}
			start := w.off
			n, err := nameLen(msg, start)
			if err != nil {
				return err
			}
			ttlAt := start + n + 4
			w.off = start + n + 10 + int(h.Length)
			if w.off > len(msg) { // the parser checks it when it skips, not when it reads a body
				return errRecordLength
			}
			if sec == 1 && h.Type == dnsmessage.TypeSOA && !w.soa {
				soa, err := p.SOAResource()
				if err != nil {
					return err
				}
				w.soa, w.soaTTL, w.soaMin = true, h.TTL, soa.MinTTL
			} else if err := skipRecord(p, sec); err != nil {
				return err
			}
			if sec == 2 && h.Type == dnsmessage.TypeOPT {
				w.opts++
				w.optStart, w.optEnd = start, w.off
				continue
			}
			a.ttls = append(a.ttls, uint16(ttlAt))
			if sec == 0 {
				w.answers++
			}
			if sec < 2 {
				w.least = min(w.least, h.TTL)
			}
		}
	}
	return nil
}

// recordHeader reads the next record header of section sec (0: answers,
// 1: authority, 2: additional).
func recordHeader(p *dnsmessage.Parser, sec int) (dnsmessage.ResourceHeader, error) {
	switch sec {
	case 0:
		return p.AnswerHeader()
	case 1:
		return p.AuthorityHeader()
	}
	return p.AdditionalHeader()
}

// skipRecord skips the body of the record whose header was just read.
func skipRecord(p *dnsmessage.Parser, sec int) error {
	switch sec {
	case 0:
		return p.SkipAnswer()
	case 1:
		return p.SkipAuthority()
	}
	return p.SkipAdditional()
}

// cacheTTL is how long the answer may be cached: the least TTL of its
// records, or for a negative answer (NXDOMAIN or NODATA) the SOA's TTL and
// minimum (RFC 2308 5); not at all for truncated answers, other rcodes, and
// negative answers without SOA.
func (w *answerWalk) cacheTTL(h dnsmessage.Header) time.Duration {
	if h.Truncated || h.RCode != dnsmessage.RCodeSuccess && h.RCode != dnsmessage.RCodeNameError {
		return 0
	}
	if h.RCode == dnsmessage.RCodeSuccess && w.answers > 0 {
		return time.Duration(w.least) * time.Second
	}
	if w.soa {
		return min(time.Duration(min(w.soaTTL, w.soaMin))*time.Second, maxNegativeTTL)
	}
	return 0
}

package documents

import (
	"bytes"
	"compress/flate"
	"io"
	"math"
)

// maxPDFName is the longest decoded name the scanner compares; longer names
// cannot be one of the banned ones.
const maxPDFName = 64

// maxPDFDepth bounds how deeply arrays and dictionaries may nest.
const maxPDFDepth = 64

// maxPDFFilters bounds the /Filter and /DecodeParms arrays of a stream.
const maxPDFFilters = 32

// pdfBanned are the names that make a PDF unacceptable, with the reason.
var pdfBanned = map[string]string{
	"JavaScript":    "JavaScript",
	"JS":            "JavaScript",
	"Launch":        "a launch action",
	"EmbeddedFile":  "an embedded file",
	"EmbeddedFiles": "embedded files",
	"OpenAction":    "an open action",
	"AA":            "additional actions",
	"XFA":           "an XFA form",
	"RichMedia":     "rich media",
	"GoToR":         "a remote go-to action",
	"GoToE":         "an embedded go-to action",
	"ImportData":    "an import-data action",
	"SubmitForm":    "a submit-form action",
	"Encrypt":       "encryption",
}

func inspectPDF(data []byte, lim Limits) (*Document, error) {
	if !bytes.HasSuffix(bytes.TrimRight(data, " \t\r\n\f\x00"), []byte("%%EOF")) {
		return nil, unsupported("not a complete PDF (no %%%%EOF at the end, or data after it)")
	}
	s := pdfScanner{budget: lim.MaxZipUncompressed}
	if err := s.scanFile(data); err != nil {
		return nil, err
	}
	return &Document{Kind: KindPDF, Data: data}, nil
}

// pdfScanner is the bounded scan described on Inspect.
type pdfScanner struct {
	budget int64         // bytes that may still be decoded
	fl     io.ReadCloser // the inflater, reset for each stream
	src    bytes.Reader  // what fl reads
	buf    [2][]byte     // decoding buffers: filter k of a stream writes buf[k%2]
}

func isPDFSpace(c byte) bool {
	return c == 0 || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' '
}

func isPDFDelim(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '[', ']', '{', '}', '/', '%':
		return true
	}
	return false
}

func isPDFRegular(c byte) bool { return !isPDFSpace(c) && !isPDFDelim(c) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isWordChar is a character of a regular-expression word (\w), which ends a
// keyword for readers that search for one with \b.
func isWordChar(c byte) bool {
	return isDigit(c) || c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z')
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// pdfNameAt decodes the name whose first character after the slash is at i
// into buf as readers do (#xx escapes included), and returns its length,
// whether it was longer than buf, and where it ends.
func pdfNameAt(b []byte, i int, buf *[maxPDFName]byte) (n int, long bool, end int) {
	for i < len(b) && isPDFRegular(b[i]) {
		ch := b[i]
		i++
		if ch == '#' && i+1 < len(b) {
			if hi, ok := unhex(b[i]); ok {
				if lo, ok := unhex(b[i+1]); ok {
					ch = hi<<4 | lo
					i += 2
				}
			}
		}
		if n < len(buf) {
			buf[n] = ch
			n++
		} else {
			long = true
		}
	}
	return n, long, i
}

// name checks one decoded name.
func (s *pdfScanner) name(n []byte) error {
	if why, bad := pdfBanned[string(n)]; bad {
		if string(n) == "Encrypt" {
			return unsupported("encrypted PDFs are not accepted")
		}
		return unsupported("the PDF contains active content (%s, /%s)", why, string(n))
	}
	return nil
}

// names checks every name in b, bytes that are not tokenised (the inside
// of a string or comment, or stream data): each slash starts a name, decoded
// as a reader would. With all unset only the banned names of three letters
// or more count, since /JS and /AA match binary data by chance.
func (s *pdfScanner) names(b []byte, all bool) error {
	var buf [maxPDFName]byte
	for off := 0; ; {
		k := bytes.IndexByte(b[off:], '/')
		if k < 0 {
			return nil
		}
		n, long, end := pdfNameAt(b, off+k+1, &buf)
		if !long && (all || n >= 3) {
			if err := s.name(buf[:n]); err != nil {
				return err
			}
		}
		off = end
	}
}

// hiddenSyntax refuses an object header ("12 0 obj") or a trailer keyword in
// b, bytes the scanner does not parse as objects (a string, a comment or
// stream data): readers that rebuild a damaged cross-reference table search
// the whole file for them, and would read objects the scanner never saw.
func hiddenSyntax(b []byte) error {
	for off := 0; ; {
		k := bytes.Index(b[off:], []byte("obj"))
		if k < 0 {
			break
		}
		k += off
		off = k + 3
		if off < len(b) && isWordChar(b[off]) {
			continue // "object"
		}
		j := k
		for j > 0 && isPDFSpace(b[j-1]) {
			j--
		}
		gen := j
		for j > 0 && isDigit(b[j-1]) {
			j--
		}
		if j == gen {
			continue
		}
		sp := j
		for j > 0 && isPDFSpace(b[j-1]) {
			j--
		}
		if j < sp && j > 0 && isDigit(b[j-1]) {
			return unsupported("the PDF hides an object (an \"obj\" header) in a string, comment or stream")
		}
	}
	for off := 0; ; {
		k := bytes.Index(b[off:], []byte("trailer"))
		if k < 0 {
			return nil
		}
		k += off
		off = k + len("trailer")
		if (k == 0 || !isWordChar(b[k-1])) && (off == len(b) || !isWordChar(b[off])) {
			return unsupported("the PDF hides a trailer in a string, comment or stream")
		}
	}
}

// pdfTokKind is the kind of a pdfToken.
type pdfTokKind uint8

const (
	pdfEOF        pdfTokKind = iota
	pdfName                  // /Name
	pdfWord                  // a run of regular characters: a number or a keyword
	pdfString                // a literal or hexadecimal string
	pdfDictOpen              // <<
	pdfDictClose             // >>
	pdfArrayOpen             // [
	pdfArrayClose            // ]
	pdfOther                 // { } and a stray ) or >
)

// pdfToken is one token of PDF syntax.
type pdfToken struct {
	kind pdfTokKind
	long bool             // a name longer than maxPDFName
	n    int              // length of the decoded name in buf
	buf  [maxPDFName]byte // the decoded name
	word []byte           // the characters of a pdfWord
	end  int              // offset just after the token
}

// name is the decoded name of a pdfName token.
func (t *pdfToken) name() []byte { return t.buf[:t.n] }

// isWord reports whether t is the keyword w.
func (t *pdfToken) isWord(w string) bool { return t.kind == pdfWord && string(t.word) == w }

// token reads the token at or after i, checking every name on the way, in
// strings and comments as well. With raw set, b is the file itself: strings
// and comments must not hide objects (hiddenSyntax) and must be terminated.
func (s *pdfScanner) token(b []byte, i int, raw bool) (pdfToken, error) {
	var t pdfToken
	for i < len(b) && (isPDFSpace(b[i]) || b[i] == '%') {
		if b[i] != '%' {
			i++
			continue
		}
		j := i + 1
		for j < len(b) && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if err := s.hidden(b[i+1:j], raw); err != nil {
			return t, err
		}
		i = j
	}
	if i >= len(b) {
		t.end = i
		return t, nil
	}
	t.end = i + 1
	switch b[i] {
	case '/':
		t.kind = pdfName
		t.n, t.long, t.end = pdfNameAt(b, i+1, &t.buf)
		if !t.long {
			if err := s.name(t.name()); err != nil {
				return t, err
			}
		}
	case '(':
		t.kind = pdfString
		depth, j := 1, i+1
		for ; j < len(b) && depth > 0; j++ {
			switch b[j] {
			case '\\':
				j++
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		if depth > 0 && raw {
			return t, unsupported("a damaged PDF (an unterminated string)")
		}
		t.end = min(j, len(b))
		if err := s.hidden(b[i+1:t.end], raw); err != nil {
			return t, err
		}
	case '<':
		if i+1 < len(b) && b[i+1] == '<' {
			t.kind, t.end = pdfDictOpen, i+2
			break
		}
		t.kind = pdfString
		k := bytes.IndexByte(b[i+1:], '>')
		if k < 0 {
			if raw {
				return t, unsupported("a damaged PDF (an unterminated hexadecimal string)")
			}
			k = len(b) - i - 1
		}
		t.end = min(i+k+2, len(b))
		if err := s.hidden(b[i+1:i+1+k], raw); err != nil {
			return t, err
		}
	case '>':
		t.kind = pdfOther
		if i+1 < len(b) && b[i+1] == '>' {
			t.kind, t.end = pdfDictClose, i+2
		}
	case '[':
		t.kind = pdfArrayOpen
	case ']':
		t.kind = pdfArrayClose
	case '{', '}', ')':
		t.kind = pdfOther
	default:
		j := i
		for j < len(b) && isPDFRegular(b[j]) {
			j++
		}
		t.kind, t.word, t.end = pdfWord, b[i:j], j
	}
	return t, nil
}

// hidden checks the inside of a string or comment.
func (s *pdfScanner) hidden(b []byte, raw bool) error {
	if err := s.names(b, true); err != nil {
		return err
	}
	if raw {
		return hiddenSyntax(b)
	}
	return nil
}

// scanFile scans a whole PDF: every token, and every stream, found as the
// "stream" keyword after a dictionary as readers find them.
func (s *pdfScanner) scanFile(b []byte) error {
	for i := 0; ; {
		t, err := s.token(b, i, true)
		if err != nil {
			return err
		}
		i = t.end
		switch t.kind {
		case pdfEOF:
			return nil
		case pdfDictOpen, pdfArrayOpen:
			v, next, err := s.value(b, t, 0, keepStreamDict)
			if err != nil {
				return err
			}
			i = next
			if v.kind != pdfVDict {
				continue
			}
			kw, err := s.token(b, i, true)
			if err != nil {
				return err
			}
			if kw.isWord("stream") {
				if i, err = s.stream(b, kw.end, &v); err != nil {
					return err
				}
			}
		case pdfDictClose, pdfArrayClose:
			return unsupported("a damaged PDF (unbalanced dictionaries or arrays)")
		case pdfWord:
			if t.isWord("stream") || t.isWord("endstream") {
				return unsupported("a damaged PDF (a stream without a dictionary)")
			}
		}
	}
}

// scanObjects scans the decoded data of a stream that may be an object
// stream: every name counts, and a stream inside it is refused (readers
// would decode it, the scanner does not).
func (s *pdfScanner) scanObjects(b []byte) error {
	for i := 0; ; {
		t, err := s.token(b, i, false)
		if err != nil {
			return err
		}
		switch {
		case t.kind == pdfEOF:
			return nil
		case t.isWord("stream") || t.isWord("endstream"):
			return unsupported("the PDF has a stream inside an object stream")
		}
		i = t.end
	}
}

// pdfValKind is the kind of a pdfValue.
type pdfValKind uint8

const (
	pdfVOther pdfValKind = iota // a string, real, boolean or keyword
	pdfVNull
	pdfVName
	pdfVInt
	pdfVRef // an indirect reference, "12 0 R"
	pdfVArray
	pdfVDict
)

// pdfValue is what value keeps of a parsed object: its kind, a name or
// integer, and the array items or dictionary entries the caller asked for.
type pdfValue struct {
	kind  pdfValKind
	name  string // pdfVName
	num   int64  // pdfVInt
	items []pdfValue
	keys  []string // kept dictionary entries: keys[i] is for items[i]
	dup   string   // a kept key given twice
	over  bool     // an array with more than maxPDFFilters items
}

// get returns the kept dictionary entry key.
func (v *pdfValue) get(key string) (*pdfValue, bool) {
	for i, k := range v.keys {
		if k == key {
			return &v.items[i], true
		}
	}
	return nil, false
}

// pdfKeep says what value keeps of a composite object.
type pdfKeep uint8

const (
	keepNothing    pdfKeep = iota
	keepStreamDict         // a top-level dictionary, perhaps a stream's: the entries pdfStreamOf reads
	keepFilters            // the items of a /Filter array
	keepParms              // a /DecodeParms dictionary, or the dictionaries of its array
	keepParmDict           // a dictionary in a /DecodeParms array
)

// pdfStreamKeys are the stream dictionary entries pdfStreamOf reads, with
// what to keep of their values.
var pdfStreamKeys = map[string]pdfKeep{
	"Type": keepNothing, "Length": keepNothing, "N": keepNothing, "First": keepNothing,
	"Filter": keepFilters, "DecodeParms": keepParms, "DP": keepParms,
	"F": keepNothing, "FFilter": keepNothing, "FDecodeParms": keepNothing,
}

// pdfParmKeys are the decode parameters the scanner reads.
var pdfParmKeys = map[string]bool{"Predictor": true, "Colors": true, "BitsPerComponent": true, "Columns": true}

// pdfInt parses an integer token (digits with an optional sign).
func pdfInt(w []byte) (int64, bool) {
	d := w
	if len(d) > 0 && (d[0] == '+' || d[0] == '-') {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range d {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if w[0] == '-' {
		n = -n
	}
	return n, true
}

// value parses the object that starts with token t (already read), inside
// depth arrays and dictionaries, and returns it with the offset after it.
// Streams may only follow a top-level dictionary: "stream" inside an array
// or dictionary is refused, as are unbalanced or unterminated objects and
// dictionary keys that are not names, on which readers disagree.
func (s *pdfScanner) value(b []byte, t pdfToken, depth int, keep pdfKeep) (pdfValue, int, error) {
	var v pdfValue
	switch t.kind {
	case pdfName:
		v.kind, v.name = pdfVName, string(t.name())
		return v, t.end, nil
	case pdfWord:
		n, ok := pdfInt(t.word)
		if !ok {
			switch string(t.word) {
			case "null":
				v.kind = pdfVNull
			case "stream", "endstream":
				return v, 0, unsupported("a damaged PDF (a stream inside an array or dictionary)")
			}
			return v, t.end, nil
		}
		v.kind, v.num = pdfVInt, n
		gen, err := s.token(b, t.end, true)
		if err != nil {
			return v, 0, err
		}
		if _, ok := pdfInt(gen.word); gen.kind == pdfWord && ok {
			r, err := s.token(b, gen.end, true)
			if err != nil {
				return v, 0, err
			}
			if r.isWord("R") {
				v.kind = pdfVRef
				return v, r.end, nil
			}
		}
		return v, t.end, nil
	case pdfDictOpen, pdfArrayOpen:
	case pdfDictClose, pdfArrayClose:
		return v, 0, unsupported("a damaged PDF (unbalanced dictionaries or arrays)")
	default:
		return v, t.end, nil
	}
	if depth >= maxPDFDepth {
		return v, 0, unsupported("a damaged PDF (arrays or dictionaries nested more than %d deep)", maxPDFDepth)
	}
	dict := t.kind == pdfDictOpen
	v.kind = pdfVArray
	if dict {
		v.kind = pdfVDict
	}
	for i := t.end; ; {
		k, err := s.token(b, i, true)
		if err != nil {
			return v, 0, err
		}
		switch {
		case k.kind == pdfEOF:
			return v, 0, unsupported("a damaged PDF (an unterminated array or dictionary)")
		case dict && k.kind == pdfDictClose, !dict && k.kind == pdfArrayClose:
			return v, k.end, nil
		}
		item := k
		childKeep, store, key := keepNothing, false, ""
		if dict {
			if k.kind != pdfName {
				return v, 0, unsupported("a damaged PDF (a dictionary key that is not a name)")
			}
			val, err := s.token(b, k.end, true)
			if err != nil {
				return v, 0, err
			}
			if val.kind == pdfDictClose || val.kind == pdfEOF {
				return v, 0, unsupported("a damaged PDF (a dictionary key without a value)")
			}
			item = val
			if !k.long {
				switch keep {
				case keepStreamDict:
					childKeep, store = pdfStreamKeys[string(k.name())]
				case keepParms, keepParmDict:
					store = pdfParmKeys[string(k.name())]
				}
			}
			if store {
				key = string(k.name())
				if _, seen := v.get(key); seen {
					store = false
					if v.dup == "" {
						v.dup = key
					}
				}
			}
		} else {
			switch keep {
			case keepFilters:
				store = true
			case keepParms:
				store, childKeep = true, keepParmDict
			}
			if store && len(v.items) == maxPDFFilters {
				store, v.over = false, true
			}
		}
		child, next, err := s.value(b, item, depth+1, childKeep)
		if err != nil {
			return v, 0, err
		}
		if store {
			v.items = append(v.items, child)
			if dict {
				v.keys = append(v.keys, key)
			}
		}
		i = next
	}
}

// pdfStream is what a stream dictionary says about the stream's data.
type pdfStream struct {
	filters []string
	parms   []*pdfValue // for each filter, its parameter dictionary or nil
	objStm  bool        // the stream may hold objects (see pdfStreamOf)
	length  int64       // a direct /Length, or -1
}

// pdfStreamOf reads a stream dictionary. A stream may hold objects when its
// /Type is /ObjStm or anything but a direct name, or when it has /N or
// /First: readers find object streams through the cross-reference stream,
// not /Type, and need /N (and most /First) to read one. What the scanner
// cannot read for certain is refused: indirect or malformed /Filter and
// /DecodeParms, keys given twice, external stream data (/F, which pdf.js
// also takes for /Filter).
func pdfStreamOf(d *pdfValue) (pdfStream, error) {
	st := pdfStream{length: -1}
	if d.dup != "" {
		return st, unsupported("a damaged PDF (a stream dictionary with /%s twice)", d.dup)
	}
	for _, k := range []string{"F", "FFilter", "FDecodeParms"} {
		if _, ok := d.get(k); ok {
			return st, unsupported("the PDF has a stream with external data (/%s)", k)
		}
	}
	if t, ok := d.get("Type"); ok && (t.kind != pdfVName || t.name == "ObjStm") {
		st.objStm = true
	}
	_, n := d.get("N")
	_, first := d.get("First")
	st.objStm = st.objStm || n || first
	if l, ok := d.get("Length"); ok && l.kind == pdfVInt {
		st.length = l.num
	}
	f, hasF := d.get("Filter")
	p, hasP := d.get("DecodeParms")
	if dp, ok := d.get("DP"); ok {
		if hasP {
			return st, unsupported("a damaged PDF (a stream dictionary with both /DP and /DecodeParms)")
		}
		p, hasP = dp, true
	}
	array := false
	switch {
	case !hasF || f.kind == pdfVNull:
	case f.kind == pdfVName:
		st.filters = []string{f.name}
	case f.kind == pdfVArray && !f.over:
		array = true
		for _, it := range f.items {
			if it.kind != pdfVName {
				return st, unsupported("the PDF has a stream that cannot be inspected (/Filter holds something other than names)")
			}
			st.filters = append(st.filters, it.name)
		}
	default:
		return st, unsupported("the PDF has a stream that cannot be inspected (/Filter is not a name or a short array of names)")
	}
	st.parms = make([]*pdfValue, len(st.filters))
	switch {
	case !hasP || p.kind == pdfVNull || len(st.filters) == 0:
	case !array && p.kind == pdfVDict:
		st.parms[0] = p
	case array && p.kind == pdfVArray && !p.over:
		for i := range p.items {
			switch it := &p.items[i]; {
			case it.kind == pdfVNull:
			case it.kind == pdfVDict && i < len(st.parms):
				st.parms[i] = it
			case it.kind != pdfVDict:
				return st, unsupported("the PDF has a stream that cannot be inspected (/DecodeParms holds something other than dictionaries)")
			}
		}
	default:
		return st, unsupported("the PDF has a stream that cannot be inspected (/DecodeParms does not match /Filter)")
	}
	return st, nil
}

// stream handles a stream whose keyword ends at i, with dictionary d, and
// returns where scanning goes on (after "endstream"). The data runs to the
// first "endstream", as readers take it when /Length is wrong; a reader that
// trusts a longer /Length sees more, so a direct /Length that reaches a later
// "endstream" is refused, and the decoders insist on their end markers, so
// that data cut short by a planted "endstream" (with an indirect /Length)
// does not pass.
func (s *pdfScanner) stream(b []byte, i int, d *pdfValue) (int, error) {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	switch {
	case bytes.HasPrefix(b[i:], []byte("\r\n")):
		i += 2
	case i < len(b) && (b[i] == '\n' || b[i] == '\r'):
		i++
	default:
		return 0, unsupported("a damaged PDF (no end of line after a stream keyword)")
	}
	end := bytes.Index(b[i:], []byte("endstream"))
	if end < 0 {
		return 0, unsupported("a damaged PDF (a stream without endstream)")
	}
	body, next := b[i:i+end], i+end+len("endstream")
	if err := s.names(body, false); err != nil {
		return 0, err
	}
	st, err := pdfStreamOf(d)
	if err != nil {
		return 0, err
	}
	if st.length > int64(len(body)) && st.length <= int64(len(b)-i) && endsAt(b, i+int(st.length)) {
		return 0, unsupported("a damaged PDF (a stream's /Length runs past its endstream to another)")
	}
	if err := hiddenSyntax(body); err != nil {
		return 0, err
	}
	return next, s.decode(body, st)
}

// endsAt reports whether "endstream" follows offset i, after white space and
// comments: where a reader that trusts /Length looks for it.
func endsAt(b []byte, i int) bool {
	for i < len(b) && (isPDFSpace(b[i]) || b[i] == '%') {
		if b[i] == '%' {
			for i < len(b) && b[i] != '\n' && b[i] != '\r' {
				i++
			}
			continue
		}
		i++
	}
	return bytes.HasPrefix(b[i:], []byte("endstream"))
}

// decode decodes a stream's data through its filters and checks the result:
// every name if the stream may hold objects, else the names of three letters
// or more. Data the scanner cannot decode is refused, except an image codec
// as the last filter of a stream that cannot hold objects.
func (s *pdfScanner) decode(body []byte, st pdfStream) error {
	if len(bytes.Trim(body, "\x00\t\n\f\r ")) == 0 {
		return nil // empty: readers see no data whatever the filters
	}
	if len(st.filters) == 0 {
		if !st.objStm {
			return nil // already checked by stream
		}
		if st.length < 0 {
			// With an indirect /Length a reader's data may run past the
			// first "endstream", where the scanner does not look for names.
			return unsupported("the PDF has an uncompressed object stream without a direct /Length")
		}
		return s.scanObjects(body)
	}
	data := body
	for k, f := range st.filters {
		var err error
		out := s.buf[k%2][:0]
		switch f {
		case "FlateDecode", "Fl":
			if out, err = s.inflate(out, data); err == nil {
				out, err = predict(out, st.parms[k])
			}
		case "ASCIIHexDecode", "AHx":
			out, err = asciiHexDecode(out, data)
		case "ASCII85Decode", "A85":
			out, err = ascii85Decode(out, data, s.budget)
		case "RunLengthDecode", "RL":
			out, err = runLengthDecode(out, data, s.budget)
		case "DCTDecode", "DCT", "JPXDecode", "JBIG2Decode", "CCITTFaxDecode", "CCF":
			switch {
			case st.objStm:
				return unsupported("the PDF has an object stream that cannot be inspected (/%s)", f)
			case k != len(st.filters)-1:
				return unsupported("the PDF has a stream that cannot be inspected (/%s before another filter)", f)
			case k == 0:
				return nil // already checked by stream
			}
			return s.names(data, false)
		case "LZWDecode", "LZW", "Crypt":
			return unsupported("the PDF has a stream that cannot be inspected (/%s)", f)
		default:
			return unsupported("the PDF has a stream that cannot be inspected (unknown filter /%s)", f)
		}
		if out != nil {
			s.buf[k%2] = out
		}
		if err != nil {
			return err
		}
		if int64(len(out)) > s.budget {
			return unsupported("the PDF's streams are too large once decoded")
		}
		s.budget -= int64(len(out))
		data = out
	}
	if st.objStm {
		return s.scanObjects(data)
	}
	return s.names(data, false)
}

// inflate appends to out the zlib data in, which must be complete (readers
// stop at its end, so data cut short would hide the rest from the scanner),
// reading at most one byte more than the budget. The Adler-32 checksum is
// not checked: readers ignore it.
func (s *pdfScanner) inflate(out, in []byte) ([]byte, error) {
	if len(in) < 2 || in[0]&0x0f != 8 || in[0]>>4 > 7 || (uint16(in[0])<<8|uint16(in[1]))%31 != 0 || in[1]&0x20 != 0 {
		return out, unsupported("a damaged PDF (a FlateDecode stream without a zlib header)")
	}
	s.src.Reset(in[2:])
	if s.fl == nil {
		s.fl = flate.NewReader(&s.src)
	} else if err := s.fl.(flate.Resetter).Reset(&s.src, nil); err != nil {
		return out, unsupported("a damaged PDF (%v)", err)
	}
	limit := s.budget
	if limit < math.MaxInt64 {
		limit++
	}
	w := bytes.NewBuffer(out)
	if _, err := w.ReadFrom(io.LimitReader(s.fl, limit)); err != nil {
		return w.Bytes(), unsupported("a damaged PDF (a FlateDecode stream that does not inflate: %v)", err)
	}
	// Within the budget, the limit did not stop the inflater: it ended.
	return w.Bytes(), nil
}

// parmInt reads an integer decode parameter, def when absent or zero (as
// pdf.js reads them).
func parmInt(p *pdfValue, key string, def int64) (int64, error) {
	v, ok := p.get(key)
	switch {
	case !ok || v.kind == pdfVNull || (v.kind == pdfVInt && v.num == 0):
		return def, nil
	case v.kind == pdfVInt && v.num > 0:
		return v.num, nil
	}
	return 0, unsupported("the PDF has a stream that cannot be inspected (a /%s that is not a positive integer)", key)
}

// predict undoes the predictor that the decode parameters p name, in place.
// PNG predictors (10-15) take their algorithm from each row's tag byte; the
// TIFF predictor (2) is supported for 8 and 16 bits per component.
func predict(data []byte, p *pdfValue) ([]byte, error) {
	if p == nil {
		return data, nil
	}
	pred, err := parmInt(p, "Predictor", 1)
	if err != nil || pred == 1 {
		return data, err
	}
	colors, err := parmInt(p, "Colors", 1)
	if err != nil {
		return data, err
	}
	bpc, err := parmInt(p, "BitsPerComponent", 8)
	if err != nil {
		return data, err
	}
	columns, err := parmInt(p, "Columns", 1)
	if err != nil {
		return data, err
	}
	if colors > 32 || columns > 1<<32 || (bpc != 1 && bpc != 2 && bpc != 4 && bpc != 8 && bpc != 16) {
		return data, unsupported("the PDF has a stream that cannot be inspected (predictor parameters out of range)")
	}
	pixel := int((colors*bpc + 7) / 8)
	row := (columns*colors*bpc + 7) / 8
	switch {
	case pred == 2 && (bpc == 8 || bpc == 16):
		if row > int64(len(data)) {
			row = int64(len(data))
		}
		tiffUnpredict(data, int(row), int(colors), bpc == 16)
		return data, nil
	case pred >= 10 && pred <= 15:
		return pngUnpredict(data, int(min(row, int64(len(data)))), pixel)
	}
	return data, unsupported("the PDF has a stream that cannot be inspected (predictor %d)", pred)
}

// tiffUnpredict undoes TIFF predictor 2 (horizontal differencing) on rows of
// row bytes with colors components of 8 or, with wide set, 16 bits.
func tiffUnpredict(data []byte, row, colors int, wide bool) {
	if row == 0 {
		return
	}
	for start := 0; start < len(data); start += row {
		r := data[start:min(start+row, len(data))]
		if !wide {
			for i := colors; i < len(r); i++ {
				r[i] += r[i-colors]
			}
			continue
		}
		for i := 2 * colors; i+1 < len(r); i += 2 {
			v := uint16(r[i])<<8 | uint16(r[i+1])
			v += uint16(r[i-2*colors])<<8 | uint16(r[i-2*colors+1])
			r[i], r[i+1] = byte(v>>8), byte(v)
		}
	}
}

// pngUnpredict undoes PNG predictors in place: each row of row bytes after
// its tag byte, pixel bytes per pixel; a short last row is decoded as far as
// it goes.
func pngUnpredict(data []byte, row, pixel int) ([]byte, error) {
	out := 0 // decoded bytes so far, in data[:out]
	for in := 0; in < len(data); {
		tag := data[in]
		in++
		n := min(row, len(data)-in)
		if n == 0 {
			break
		}
		prev := out - row // start of the previous decoded row, if any
		for i := range n {
			x := data[in+i]
			var left, up, upLeft byte
			if i >= pixel {
				left = data[out+i-pixel]
			}
			if prev >= 0 {
				up = data[prev+i]
				if i >= pixel {
					upLeft = data[prev+i-pixel]
				}
			}
			switch tag {
			case 0:
			case 1:
				x += left
			case 2:
				x += up
			case 3:
				x += byte((int(left) + int(up)) / 2)
			case 4:
				x += paeth(left, up, upLeft)
			default:
				return data[:out], unsupported("a damaged PDF (a PNG predictor row tag %d)", tag)
			}
			data[out+i] = x
		}
		in += n
		out += n
	}
	return data[:out], nil
}

// paeth is the PNG Paeth predictor.
func paeth(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	pa, pb, pc := abs(p-int(a)), abs(p-int(b)), abs(p-int(c))
	switch {
	case pa <= pb && pa <= pc:
		return a
	case pb <= pc:
		return b
	}
	return c
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// asciiHexDecode appends to out the ASCIIHexDecode data in, which must end
// with ">" and hold only hex digits and white space before it.
func asciiHexDecode(out, in []byte) ([]byte, error) {
	hi := -1
	for _, c := range in {
		switch d, ok := unhex(c); {
		case c == '>':
			if hi >= 0 {
				out = append(out, byte(hi<<4))
			}
			return out, nil
		case isPDFSpace(c):
		case !ok:
			return out, unsupported("a damaged PDF (an ASCIIHexDecode stream with a character other than a hex digit)")
		case hi < 0:
			hi = int(d)
		default:
			out = append(out, byte(hi<<4)|d)
			hi = -1
		}
	}
	return out, unsupported("a damaged PDF (an ASCIIHexDecode stream without its > end marker)")
}

// ascii85Decode appends to out the ASCII85Decode data in, which must end
// with "~>" and hold only ASCII85 characters and white space before it,
// producing at most budget bytes (a "z" stands for four).
func ascii85Decode(out, in []byte, budget int64) ([]byte, error) {
	var acc uint64
	n := 0
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case isPDFSpace(c):
		case c == 'z' && n == 0:
			if out = append(out, 0, 0, 0, 0); int64(len(out)) > budget {
				return out, unsupported("the PDF's streams are too large once decoded")
			}
		case c >= '!' && c <= 'u':
			acc = acc*85 + uint64(c-'!')
			if n++; n == 5 {
				if acc > math.MaxUint32 {
					return out, unsupported("a damaged PDF (an ASCII85Decode group out of range)")
				}
				out = append(out, byte(acc>>24), byte(acc>>16), byte(acc>>8), byte(acc))
				acc, n = 0, 0
			}
		case c == '~':
			j := i + 1
			for j < len(in) && isPDFSpace(in[j]) {
				j++
			}
			if j == len(in) || in[j] != '>' || n == 1 {
				return out, unsupported("a damaged PDF (an ASCII85Decode stream with a bad ~> end marker)")
			}
			if n > 0 {
				for k := n; k < 5; k++ {
					acc = acc*85 + 84
				}
				if acc > math.MaxUint32 {
					return out, unsupported("a damaged PDF (an ASCII85Decode group out of range)")
				}
				out = append(out, []byte{byte(acc >> 24), byte(acc >> 16), byte(acc >> 8)}[:n-1]...)
			}
			return out, nil
		default:
			return out, unsupported("a damaged PDF (an ASCII85Decode stream with a character outside ASCII85)")
		}
	}
	return out, unsupported("a damaged PDF (an ASCII85Decode stream without its ~> end marker)")
}

// runLengthDecode appends to out the RunLengthDecode data in, which must end
// with the end-of-data byte 128, producing at most budget bytes.
func runLengthDecode(out, in []byte, budget int64) ([]byte, error) {
	for i := 0; i < len(in); {
		l := int(in[i])
		i++
		switch {
		case l == 128:
			return out, nil
		case l < 128:
			if i+l+1 > len(in) {
				return out, unsupported("a damaged PDF (a truncated RunLengthDecode stream)")
			}
			out = append(out, in[i:i+l+1]...)
			i += l + 1
		default:
			if i == len(in) {
				return out, unsupported("a damaged PDF (a truncated RunLengthDecode stream)")
			}
			for range 257 - l {
				out = append(out, in[i])
			}
			i++
		}
		if int64(len(out)) > budget {
			return out, unsupported("the PDF's streams are too large once decoded")
		}
	}
	return out, unsupported("a damaged PDF (a RunLengthDecode stream without its end-of-data byte)")
}

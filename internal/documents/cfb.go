package documents

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode/utf16"
)

// A small, bounded reader of Compound File Binary (MS-CFB) files: just enough
// of the header, FAT (with DIFAT) and directory to tell whether the file is a
// Word document without macros or embedded objects. Every sector number is
// checked against the sectors present, every chain is bounded by the number of
// sectors (so cycles end), and the directory tree walk visits each entry at
// most once. Nothing is allocated beyond a FAT of at most len(data)/4 entries
// and the directory entries themselves.

const (
	cfbEndOfChain = 0xFFFFFFFE
	cfbNoStream   = 0xFFFFFFFF
	cfbDirEntry   = 128

	cfbTypeStorage = 1
	cfbTypeStream  = 2
	cfbTypeRoot    = 5

	fibIdent      = 0xA5EC
	fibEncrypted  = 0x0100
	cfbMiniSector = 64
)

// cfbMacroNames are the storages and streams that hold VBA macros (compared
// case-insensitively, as CFB names are).
var cfbMacroNames = map[string]bool{
	"macros": true, "_vba_project_cur": true, "vba": true, "_vba_project": true,
}

type cfbEntry struct {
	name               string
	typ                byte
	left, right, child uint32
	start              uint32
	size               uint64
}

type cfbFile struct {
	data    []byte
	secSize int
	nsec    uint32 // whole sectors after the header
	fat     []uint32
	major   uint16
	cutoff  uint32
	miniFAT []uint32 // read on first use
}

func cfbError(why string) error {
	return unsupported("not a valid Word (OLE2) document: %s", why)
}

// sector returns sector id, or false when it is not in the file.
func (c *cfbFile) sector(id uint32) ([]byte, bool) {
	if id >= c.nsec {
		return nil, false
	}
	off := (int(id) + 1) * c.secSize
	return c.data[off : off+c.secSize], true
}

// chain follows the FAT from start, bounded by the number of sectors.
func (c *cfbFile) chain(start uint32) ([]uint32, error) {
	var ids []uint32
	for id := start; id != cfbEndOfChain; {
		if id >= c.nsec || int(id) >= len(c.fat) {
			return nil, cfbError("a sector chain leaves the file")
		}
		if uint32(len(ids)) >= c.nsec {
			return nil, cfbError("a sector chain loops")
		}
		ids = append(ids, id)
		id = c.fat[id]
	}
	return ids, nil
}

func parseCFB(data []byte) (*cfbFile, error) {
	if len(data) < 512 {
		return nil, cfbError("shorter than its header")
	}
	if !bytes.HasPrefix(data, sigCFB) {
		return nil, cfbError("no OLE2 signature")
	}
	le := binary.LittleEndian
	c := &cfbFile{data: data, major: le.Uint16(data[0x1A:])}
	if le.Uint16(data[0x1C:]) != 0xFFFE {
		return nil, cfbError("bad byte order mark")
	}
	shift := le.Uint16(data[0x1E:])
	switch {
	case c.major == 3 && shift == 9:
		c.secSize = 512
	case c.major == 4 && shift == 12:
		c.secSize = 4096
	default:
		return nil, cfbError("unknown version or sector size")
	}
	if le.Uint16(data[0x20:]) != 6 {
		return nil, cfbError("bad mini sector size")
	}
	if len(data) < c.secSize {
		return nil, cfbError("shorter than its header")
	}
	c.nsec = uint32((len(data) - c.secSize) / c.secSize)
	c.cutoff = le.Uint32(data[0x38:])
	if c.cutoff != 4096 {
		return nil, cfbError("bad mini stream cutoff")
	}
	numFAT := le.Uint32(data[0x2C:])
	if numFAT == 0 || numFAT > c.nsec {
		return nil, cfbError("bad FAT size")
	}
	// The FAT sector numbers: 109 in the header, then the DIFAT chain.
	fatSecs := make([]uint32, 0, numFAT)
	for k := 0; k < 109 && uint32(len(fatSecs)) < numFAT; k++ {
		fatSecs = append(fatSecs, le.Uint32(data[0x4C+4*k:]))
	}
	per := c.secSize/4 - 1
	difat := le.Uint32(data[0x44:])
	numDIFAT := le.Uint32(data[0x48:])
	for k := uint32(0); uint32(len(fatSecs)) < numFAT; k++ {
		if k >= numDIFAT || k >= c.nsec {
			return nil, cfbError("the DIFAT is short")
		}
		s, ok := c.sector(difat)
		if !ok {
			return nil, cfbError("a DIFAT sector leaves the file")
		}
		for j := 0; j < per && uint32(len(fatSecs)) < numFAT; j++ {
			fatSecs = append(fatSecs, le.Uint32(s[4*j:]))
		}
		difat = le.Uint32(s[4*per:])
	}
	perFAT := c.secSize / 4
	c.fat = make([]uint32, 0, min(int(numFAT)*perFAT, int(c.nsec)))
	for _, id := range fatSecs {
		s, ok := c.sector(id)
		if !ok {
			return nil, cfbError("a FAT sector leaves the file")
		}
		for j := 0; j < perFAT && len(c.fat) < int(c.nsec); j++ {
			c.fat = append(c.fat, le.Uint32(s[4*j:]))
		}
	}
	return c, nil
}

// directory reads every directory entry.
func (c *cfbFile) directory() ([]cfbEntry, error) {
	ids, err := c.chain(binary.LittleEndian.Uint32(c.data[0x30:]))
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var entries []cfbEntry
	for _, id := range ids {
		s, _ := c.sector(id) // chain checked the id
		for off := 0; off+cfbDirEntry <= len(s); off += cfbDirEntry {
			e := s[off : off+cfbDirEntry]
			ent := cfbEntry{
				typ:   e[0x42],
				left:  le.Uint32(e[0x44:]),
				right: le.Uint32(e[0x48:]),
				child: le.Uint32(e[0x4C:]),
				start: le.Uint32(e[0x74:]),
				size:  le.Uint64(e[0x78:]),
			}
			if c.major == 3 {
				ent.size &= 0xFFFFFFFF // the high half is undefined in version 3
			}
			if n := int(le.Uint16(e[0x40:])); n >= 2 && n <= 64 && n%2 == 0 {
				u := make([]uint16, n/2-1)
				for k := range u {
					u[k] = le.Uint16(e[2*k:])
				}
				ent.name = string(utf16.Decode(u))
			}
			entries = append(entries, ent)
		}
	}
	if len(entries) == 0 || entries[0].typ != cfbTypeRoot {
		return nil, cfbError("no root entry")
	}
	return entries, nil
}

// children lists the entries of the sibling tree rooted at first, visiting each
// entry at most once.
func children(entries []cfbEntry, first uint32, seen []bool) []int {
	var out []int
	stack := []uint32{first}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if id == cfbNoStream || int(id) >= len(entries) || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, int(id))
		stack = append(stack, entries[id].left, entries[id].right)
	}
	return out
}

// streamHead returns the first n bytes of a stream entry.
func (c *cfbFile) streamHead(root, e cfbEntry, n int) ([]byte, bool) {
	if e.size < uint64(n) {
		return nil, false
	}
	if e.size >= uint64(c.cutoff) {
		// The whole chain must be there and long enough.
		ids, err := c.chain(e.start)
		if err != nil || uint64(len(ids))*uint64(c.secSize) < e.size {
			return nil, false
		}
		s, _ := c.sector(ids[0])
		return s[:n], true
	}
	// In the mini stream, which lives in the root entry's chain.
	off := uint64(e.start) * cfbMiniSector
	if off+e.size > root.size {
		return nil, false
	}
	ids, err := c.chain(root.start)
	if err != nil || uint64(len(ids))*uint64(c.secSize) < root.size {
		return nil, false
	}
	k := off / uint64(c.secSize)
	if k >= uint64(len(ids)) {
		return nil, false
	}
	s, _ := c.sector(ids[k])
	in := int(off % uint64(c.secSize))
	if in+n > len(s) {
		return nil, false
	}
	return s[in : in+n], true
}

// readMiniFAT reads the mini FAT, bounded like every chain.
func (c *cfbFile) readMiniFAT() error {
	if c.miniFAT != nil {
		return nil
	}
	ids, err := c.chain(binary.LittleEndian.Uint32(c.data[0x3C:]))
	if err != nil {
		return err
	}
	c.miniFAT = make([]uint32, 0, len(ids)*c.secSize/4)
	for _, id := range ids {
		s, _ := c.sector(id)
		for j := 0; j+4 <= len(s); j += 4 {
			c.miniFAT = append(c.miniFAT, binary.LittleEndian.Uint32(s[j:]))
		}
	}
	return nil
}

// stream returns the whole content of a stream entry, or false when its
// chain is broken or short. Regular streams are at most the file; mini
// streams at most the root entry's chain, which is in the file too.
func (c *cfbFile) stream(root, e cfbEntry) ([]byte, bool) {
	if e.size >= uint64(c.cutoff) {
		return c.regular(e.start, e.size)
	}
	mini, ok := c.regular(root.start, root.size)
	if !ok || c.readMiniFAT() != nil {
		return nil, false
	}
	out := make([]byte, 0, e.size)
	for id, n := e.start, 0; uint64(len(out)) < e.size; n++ {
		if n >= len(c.miniFAT) || int(id) >= len(c.miniFAT) {
			return nil, false // past the mini FAT, or a loop
		}
		off := int(id) * cfbMiniSector
		if off+cfbMiniSector > len(mini) {
			return nil, false
		}
		out = append(out, mini[off:off+cfbMiniSector]...)
		id = c.miniFAT[id]
	}
	return out[:e.size], true
}

// regular reads size bytes along the FAT chain from start.
func (c *cfbFile) regular(start uint32, size uint64) ([]byte, bool) {
	if size > uint64(len(c.data)) {
		return nil, false
	}
	ids, err := c.chain(start)
	if err != nil || uint64(len(ids))*uint64(c.secSize) < size {
		return nil, false
	}
	out := make([]byte, 0, size)
	for _, id := range ids {
		if uint64(len(out)) >= size {
			break
		}
		s, _ := c.sector(id)
		out = append(out, s...)
	}
	return out[:size], true
}

// docFieldName finds a banned field in the text of a WordDocument stream.
// A field starts with character 0x13 and its instruction follows; the text
// is stored as 8-bit characters or UTF-16LE, so both are looked for. It
// reads the stream as Word saves it (text in one piece), and inspectDOC runs
// it again on the text the piece table assembles (pieceText), which a file
// may store in pieces out of order.
func docFieldName(word []byte) string {
	for i := bytes.IndexByte(word, 0x13); i >= 0; {
		rest := word[i+1:]
		for _, wide := range []bool{false, true} {
			r := rest
			if wide && len(r) > 0 && r[0] == 0 { // the high byte of U+0013
				r = r[1:]
			}
			var b strings.Builder
			for k := 0; k < len(r) && b.Len() < 32; k++ {
				if wide {
					if k+1 >= len(r) || r[k+1] != 0 {
						break
					}
					b.WriteByte(r[k])
					k++
				} else {
					b.WriteByte(r[k])
				}
			}
			if n := fieldName(b.String()); bannedFields[n] {
				return n
			}
		}
		j := bytes.IndexByte(rest, 0x13)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return ""
}

func inspectDOC(data []byte) (*Document, error) {
	c, err := parseCFB(data)
	if err != nil {
		return nil, err
	}
	entries, err := c.directory()
	if err != nil {
		return nil, err
	}
	// Anywhere in the directory, reachable or not: no macros.
	for _, e := range entries {
		if e.typ != cfbTypeStorage && e.typ != cfbTypeStream {
			continue
		}
		name := strings.ToLower(e.name)
		if cfbMacroNames[name] {
			return nil, unsupported("Word documents with macros are not accepted")
		}
		if name == "objectpool" && e.typ == cfbTypeStorage && e.child != cfbNoStream {
			return nil, unsupported("Word documents with embedded objects are not accepted")
		}
	}
	root := entries[0]
	seen := make([]bool, len(entries))
	seen[0] = true
	var word []cfbEntry
	for _, id := range children(entries, root.child, seen) {
		if e := entries[id]; e.typ == cfbTypeStream && strings.EqualFold(e.name, "WordDocument") {
			word = append(word, e)
		}
	}
	switch len(word) {
	case 0:
		return nil, unsupported("the OLE2 file is not a Word document (%s is not accepted)", describe(data))
	case 1:
	default:
		return nil, cfbError("more than one WordDocument stream")
	}
	fib, ok := c.streamHead(root, word[0], 32)
	if !ok {
		return nil, cfbError("the WordDocument stream cannot be read")
	}
	if binary.LittleEndian.Uint16(fib[0:]) != fibIdent {
		return nil, cfbError("the WordDocument stream has no Word header")
	}
	if binary.LittleEndian.Uint16(fib[10:])&fibEncrypted != 0 {
		return nil, unsupported("encrypted Word documents are not accepted")
	}
	text, ok := c.stream(root, word[0])
	if !ok {
		return nil, cfbError("the WordDocument stream cannot be read")
	}
	if n := docFieldName(text); n != "" {
		return nil, unsupported("Word documents with %s fields are not accepted", n)
	}
	// As Word reads it: the text assembled from its pieces, in their order.
	pieces, err := c.pieceText(root, entries, text)
	if err != nil {
		return nil, err
	}
	if n := docFieldName(pieces); n != "" {
		return nil, unsupported("Word documents with %s fields are not accepted", n)
	}
	return &Document{Kind: KindDOC, Data: data}, nil
}

const (
	// fibRgFcLcbAt is where, after FibBase (32 bytes), the FIB's variable
	// parts begin; fibClxPair is the fc/lcb pair of the piece table (Clx).
	fibRgFcLcbAt = 32
	fibClxPair   = 33
	fibWhichTbl  = 0x0200 // FibBase flags: the table stream is 1Table
	pieceFlagMax = 0x40000000
)

// pieceText assembles the document's text from its piece table, each piece
// as one byte per character (UTF-16 pieces keep their low bytes: field
// names are ASCII), so that a field name split over pieces stored out of
// order is read as Word reads it. A FIB without a piece table (an early
// format, or a file that is not a real Word document) gives nil; a piece
// table that cannot be read whole is refused.
func (c *cfbFile) pieceText(root cfbEntry, entries []cfbEntry, word []byte) ([]byte, error) {
	u16 := func(b []byte, at int) (int, bool) {
		if at < 0 || at+2 > len(b) {
			return 0, false
		}
		return int(binary.LittleEndian.Uint16(b[at:])), true
	}
	u32 := func(b []byte, at int) (uint32, bool) {
		if at < 0 || at+4 > len(b) {
			return 0, false
		}
		return binary.LittleEndian.Uint32(b[at:]), true
	}
	pos := fibRgFcLcbAt
	csw, ok := u16(word, pos)
	if !ok {
		return nil, nil
	}
	pos += 2 + 2*csw
	cslw, ok := u16(word, pos)
	if !ok {
		return nil, nil
	}
	pos += 2 + 4*cslw
	pairs, ok := u16(word, pos)
	if !ok || pairs <= fibClxPair {
		return nil, nil
	}
	fcClx, ok1 := u32(word, pos+2+fibClxPair*8)
	lcbClx, ok2 := u32(word, pos+2+fibClxPair*8+4)
	if !ok1 || !ok2 || lcbClx == 0 {
		return nil, nil
	}
	damaged := cfbError("the Word document's piece table cannot be read")
	tblName := "0Table"
	if flags, _ := u16(word, 10); flags&fibWhichTbl != 0 {
		tblName = "1Table"
	}
	var table []byte
	seen := make([]bool, len(entries))
	seen[0] = true
	for _, id := range children(entries, root.child, seen) {
		if e := entries[id]; e.typ == cfbTypeStream && strings.EqualFold(e.name, tblName) {
			if table, ok = c.stream(root, e); !ok {
				return nil, damaged
			}
		}
	}
	if uint64(fcClx)+uint64(lcbClx) > uint64(len(table)) {
		return nil, damaged
	}
	clx := table[fcClx : fcClx+lcbClx]
	i := 0
	for i < len(clx) && clx[i] == 0x01 { // Prc: property modifiers, skipped
		cb, ok := u16(clx, i+1)
		if !ok {
			return nil, damaged
		}
		i += 3 + cb
	}
	lcb, ok := u32(clx, i+1)
	if i >= len(clx) || clx[i] != 0x02 || !ok || uint64(i+5)+uint64(lcb) > uint64(len(clx)) || lcb < 4 || (lcb-4)%12 != 0 {
		return nil, damaged
	}
	plc := clx[i+5 : i+5+int(lcb)]
	n := int(lcb-4) / 12
	out := make([]byte, 0, min(len(word), 1<<20))
	for k := range n {
		start, _ := u32(plc, 4*k)
		end, _ := u32(plc, 4*(k+1))
		fc, _ := u32(plc, 4*(n+1)+8*k+2)
		if end < start || uint64(len(out))+uint64(end-start) > uint64(len(word)) {
			return nil, damaged // pieces longer than the stream: overlapping, or lying
		}
		count := int(end - start)
		if fc&pieceFlagMax != 0 { // 8-bit text at fc/2
			at := int((fc &^ pieceFlagMax) / 2)
			if at+count > len(word) {
				return nil, damaged
			}
			out = append(out, word[at:at+count]...)
			continue
		}
		at := int(fc)
		if at+2*count > len(word) || at < 0 {
			return nil, damaged
		}
		for j := 0; j < count; j++ {
			if lo, hi := word[at+2*j], word[at+2*j+1]; hi == 0 {
				out = append(out, lo)
			} else {
				out = append(out, '?')
			}
		}
	}
	return out, nil
}

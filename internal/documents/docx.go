package documents

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// docxMainType is the content type of the main part of a .docx; the
	// macro-enabled (.docm) and template types are refused.
	docxMainType = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
	// maxXMLPart bounds each package part that is parsed (content types and
	// relationships), maxXMLTotal all of them together.
	maxXMLPart  = 1 << 20
	maxXMLTotal = 16 << 20
	// ratioFloor: entries this small are not held to the ratio limit (tiny
	// parts compress well and cannot bomb; the total limit bounds them).
	ratioFloor = 4 << 10
	// maxZipName bounds the length of an entry name.
	maxZipName = 1024
	// maxXMLScan bounds the XML read for fields, all parts together: about
	// a second of tokenising, where a document of an ID scan has kilobytes.
	maxXMLScan = 32 << 20
)

// docxBannedRelTypes are relationship types (the part after the last "/",
// lower case) that bring macros, embedded objects, controls or other documents.
var docxBannedRelTypes = map[string]bool{
	"vbaproject": true, "wordvbadata": true, "oleobject": true, "afchunk": true,
	"control": true, "activexcontrolbinary": true, "package": true,
	"attachedtemplate": true, "subdocument": true, "frame": true,
}

// docxBannedTypeWords are fragments of content types (lower case) that mark
// macros, ActiveX or OLE content.
var docxBannedTypeWords = []string{"macroenabled", "vbaproject", "vbadata", "activex", "oleobject"}

// nestedExts are file extensions of archives and executables, refused inside a DOCX.
var nestedExts = map[string]bool{
	".zip": true, ".jar": true, ".docx": true, ".docm": true, ".dotx": true, ".dotm": true,
	".xlsx": true, ".xlsm": true, ".xlsb": true, ".pptx": true, ".pptm": true, ".odt": true,
	".7z": true, ".rar": true, ".gz": true, ".tar": true, ".cab": true, ".exe": true,
	".dll": true, ".msi": true, ".js": true, ".vbs": true, ".ps1": true, ".bat": true,
	".cmd": true, ".hta": true, ".scr": true, ".class": true, ".war": true, ".ear": true, ".apk": true,
}

// safeZipName reports whether an entry name is a plain relative path.
func safeZipName(n string) bool {
	if n == "" || len(n) > maxZipName || !utf8.ValidString(n) || strings.HasPrefix(n, "/") {
		return false
	}
	for _, r := range n {
		if r < 0x20 || r == 0x7F || r == '\\' {
			return false
		}
	}
	p := strings.TrimSuffix(n, "/")
	if len(p) >= 2 && p[1] == ':' { // a drive letter
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// bannedPart says why an entry must not be in a DOCX, or "".
func bannedPart(lower string) string {
	base := path.Base(lower)
	switch {
	case base == "vbaproject.bin" || base == "vbadata.xml" || strings.Contains(lower, "vbaproject"):
		return "Word documents with macros are not accepted"
	case strings.HasPrefix(base, "oleobject") || strings.Contains(lower, "/embeddings/"):
		return "Word documents with embedded objects are not accepted"
	case strings.HasPrefix(base, "activex") || strings.Contains(lower, "/activex/"):
		return "Word documents with ActiveX controls are not accepted"
	case nestedExts[path.Ext(base)]:
		return "Word documents holding other archives or programs are not accepted"
	}
	return ""
}

type zipSpan struct {
	start, end int64
}

func inspectDOCX(data []byte, lim Limits) (*Document, error) {
	// An upper bound on the entries before archive/zip allocates one File per
	// central directory record: every record starts with this signature.
	if n := bytes.Count(data, []byte("PK\x01\x02")); n > lim.MaxZipEntries {
		return nil, unsupported("the zip archive has too many entries (more than %d)", lim.MaxZipEntries)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, zip.ErrInsecurePath) {
		return nil, unsupported("the zip archive has an entry with an unsafe path")
	}
	if err != nil {
		return nil, unsupported("not a valid zip archive: %v", err)
	}
	if len(zr.File) == 0 {
		return nil, unsupported("the zip archive is empty")
	}
	if len(zr.File) > lim.MaxZipEntries {
		return nil, unsupported("the zip archive has too many entries (%d, at most %d)", len(zr.File), lim.MaxZipEntries)
	}

	// The central directory, before anything is inflated.
	byName := make(map[string]*zip.File, len(zr.File))
	spans := make([]zipSpan, 0, len(zr.File))
	var total uint64
	for _, f := range zr.File {
		// OPC part names are URIs: "%2E" in an entry name is a ".". Check
		// the name both as written and as a reader would decode it, and key
		// duplicates on the decoded, case-folded form.
		decoded, err := url.PathUnescape(f.Name)
		if err != nil || !safeZipName(f.Name) || !safeZipName(decoded) {
			return nil, unsupported("the zip archive has an entry with an unsafe path (%q)", f.Name)
		}
		lower := strings.ToLower(decoded)
		if _, dup := byName[lower]; dup {
			return nil, unsupported("the zip archive has duplicate entries (%q)", f.Name)
		}
		byName[lower] = f
		for _, n := range []string{strings.ToLower(f.Name), lower} {
			if why := bannedPart(n); why != "" {
				return nil, unsupported("%s (%s)", why, f.Name)
			}
		}
		if f.Flags&0x1 != 0 {
			return nil, unsupported("encrypted zip entries are not accepted")
		}
		u, c := f.UncompressedSize64, f.CompressedSize64
		switch f.Method {
		case zip.Store:
			if u != c {
				return nil, unsupported("the zip archive has an inconsistent stored entry (%q)", f.Name)
			}
		case zip.Deflate:
		default:
			return nil, unsupported("the zip archive uses an unsupported compression method")
		}
		if u > uint64(lim.MaxZipUncompressed) || total+u > uint64(lim.MaxZipUncompressed) {
			return nil, unsupported("the zip archive is too large once uncompressed (more than %d bytes)", lim.MaxZipUncompressed)
		}
		total += u
		if u > ratioFloor && float64(u) > lim.MaxZipRatio*float64(c) {
			return nil, unsupported("the zip archive has an entry compressed more than %.0f:1 (%q)", lim.MaxZipRatio, f.Name)
		}
		off, err := f.DataOffset()
		if err != nil {
			return nil, unsupported("the zip archive has a damaged entry (%q)", f.Name)
		}
		end := off + int64(c)
		if f.Flags&0x8 != 0 {
			end += 12 // data descriptor, at least
		}
		start := off - 30 - int64(len(f.Name)) // the local header, at least
		if start < 0 || c > uint64(len(data)) || end > int64(len(data)) {
			return nil, unsupported("the zip archive has an entry outside the file (%q)", f.Name)
		}
		spans = append(spans, zipSpan{start, end})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			return nil, unsupported("the zip archive has overlapping entries")
		}
	}

	// A Word document, by its package structure.
	ct, doc := byName["[content_types].xml"], byName["word/document.xml"]
	if ct == nil || doc == nil {
		return nil, unsupported("the zip archive is not a Word document (%s is not accepted)", describe(data))
	}
	budget := int64(maxXMLTotal)
	raw, err := readPart(ct, &budget)
	if err != nil {
		return nil, err
	}
	types, err := checkContentTypes(raw)
	if err != nil {
		return nil, err
	}
	for _, f := range zr.File {
		if !strings.HasSuffix(decodedLower(f.Name), ".rels") { // as an OPC reader names it
			continue
		}
		raw, err := readPart(f, &budget)
		if err != nil {
			return nil, err
		}
		if err := checkRels(raw); err != nil {
			return nil, err
		}
	}

	// Inflate every entry through a limited reader (sizes and CRCs), and
	// repack the raw compressed data into a clean archive.
	var out bytes.Buffer
	w := zip.NewWriter(&out)
	stamp := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	scanBudget := int64(maxXMLScan)
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") { // a directory: dropped
			if f.UncompressedSize64 != 0 {
				return nil, unsupported("the zip archive has a directory with content (%q)", f.Name)
			}
			continue
		}
		sum, err := verifyEntry(f, partScan(decodedLower(f.Name), types), &scanBudget)
		if err != nil {
			return nil, err
		}
		fw, err := w.CreateRaw(&zip.FileHeader{
			Name:               f.Name,
			Method:             f.Method,
			Modified:           stamp,
			CRC32:              sum,
			CompressedSize64:   f.CompressedSize64,
			UncompressedSize64: f.UncompressedSize64,
		})
		if err != nil {
			return nil, unsupported("the zip archive cannot be repacked: %v", err)
		}
		rr, err := f.OpenRaw()
		if err != nil {
			return nil, unsupported("the zip archive has a damaged entry (%q)", f.Name)
		}
		if n, err := io.Copy(fw, io.LimitReader(rr, int64(f.CompressedSize64))); err != nil || n != int64(f.CompressedSize64) {
			return nil, unsupported("the zip archive has a damaged entry (%q)", f.Name)
		}
	}
	if err := w.Close(); err != nil {
		return nil, unsupported("the zip archive cannot be repacked: %v", err)
	}
	return &Document{Kind: KindDOCX, Data: out.Bytes()}, nil
}

// decodedLower is an entry name as an OPC reader takes it: %-decoded, lower
// case. Names that do not decode were refused on the central directory.
func decodedLower(name string) string {
	d, err := url.PathUnescape(name)
	if err != nil {
		d = name
	}
	return strings.ToLower(d)
}

// verifyEntry inflates f, never more than its declared size plus one byte, and
// returns the CRC-32 of its content. The content is also read as XML, as
// partScan says, within the budget, and refused when it holds a banned field
// (see scanFields).
func verifyEntry(f *zip.File, scan xmlScan, budget *int64) (uint32, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, unsupported("the zip archive has a damaged entry (%q)", f.Name)
	}
	defer rc.Close()
	h := crc32.NewIEEE()
	r := io.TeeReader(io.LimitReader(rc, int64(f.UncompressedSize64)+1), h)
	cr := &countReader{r: r}
	br := bufio.NewReader(cr)
	if scan == scanIfMarkup {
		head, _ := br.Peek(64)
		if looksLikeMarkup(head) {
			scan = scanYes
		}
	}
	if scan == scanYes {
		if f.UncompressedSize64 > uint64(*budget) {
			return 0, unsupported("the Word document has too much XML (more than %d bytes)", maxXMLScan)
		}
		*budget -= int64(f.UncompressedSize64)
		if err := scanFields(br, f.Name); err != nil {
			return 0, err
		}
	}
	_, err = io.Copy(io.Discard, br)
	if n := cr.n; err != nil || uint64(n) != f.UncompressedSize64 {
		return 0, unsupported("the zip archive has an entry whose content does not match its header (%q)", f.Name)
	}
	return h.Sum32(), nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readPart inflates a part to be parsed, within maxXMLPart and the budget.
func readPart(f *zip.File, budget *int64) ([]byte, error) {
	limit := min(int64(maxXMLPart), *budget)
	if f.UncompressedSize64 > uint64(limit) {
		return nil, unsupported("the Word document has an oversized package part (%q)", f.Name)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, unsupported("the zip archive has a damaged entry (%q)", f.Name)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil || int64(len(b)) > limit {
		return nil, unsupported("the zip archive has a damaged entry (%q)", f.Name)
	}
	*budget -= int64(len(b))
	return b, nil
}

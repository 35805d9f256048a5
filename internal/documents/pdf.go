package documents

import (
	"bytes"
	"compress/zlib"
	"io"
)

// maxPDFName is the longest decoded name the scanner compares; longer names
// cannot be one of the banned ones.
const maxPDFName = 64

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

// pdfRawBanned are the literal forms searched for in stream bodies that are
// not tokenised: only names of four bytes or more, which random binary data
// matches with negligible probability.
var pdfRawBanned = [][]byte{
	[]byte("/JavaScript"), []byte("/Launch"), []byte("/EmbeddedFile"),
	[]byte("/OpenAction"), []byte("/XFA"), []byte("/RichMedia"), []byte("/GoToR"),
	[]byte("/GoToE"), []byte("/ImportData"), []byte("/SubmitForm"), []byte("/Encrypt"),
}

// pdfFilters are the standard filter names (and their inline abbreviations)
// other than FlateDecode.
var pdfFilters = map[string]bool{
	"ASCIIHexDecode": true, "AHx": true, "ASCII85Decode": true, "A85": true,
	"LZWDecode": true, "LZW": true, "RunLengthDecode": true, "RL": true,
	"CCITTFaxDecode": true, "CCF": true, "JBIG2Decode": true, "DCTDecode": true,
	"DCT": true, "JPXDecode": true, "Crypt": true,
}

func inspectPDF(data []byte, lim Limits) (*Document, error) {
	if !bytes.HasSuffix(bytes.TrimRight(data, " \t\r\n\f\x00"), []byte("%%EOF")) {
		return nil, unsupported("not a complete PDF (no %%%%EOF at the end, or data after it)")
	}
	s := pdfScanner{budget: lim.MaxZipUncompressed}
	if err := s.scan(data, false); err != nil {
		return nil, err
	}
	return &Document{Kind: KindPDF, Data: data}, nil
}

// pdfScanner is the bounded lexical scan described on Inspect.
type pdfScanner struct {
	budget int64 // bytes that may still be inflated
	// what the current object's dictionary named
	objStm, flate, otherFilter, decodeParms bool
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

// scan tokenises b. With inner set (an inflated object stream) stream
// keywords are not followed.
func (s *pdfScanner) scan(b []byte, inner bool) error {
	var name [maxPDFName]byte
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '/':
			i++
			n, long := 0, false
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
				if n < len(name) {
					name[n] = ch
					n++
				} else {
					long = true
				}
			}
			if !long {
				if err := s.name(string(name[:n])); err != nil {
					return err
				}
			}
		case isPDFRegular(c):
			start := i
			for i < len(b) && isPDFRegular(b[i]) {
				i++
			}
			switch string(b[start:i]) {
			case "obj", "endobj":
				s.objStm, s.flate, s.otherFilter, s.decodeParms = false, false, false, false
			case "stream":
				if inner {
					continue
				}
				next, err := s.stream(b, i)
				if err != nil {
					return err
				}
				i = next
			}
		default:
			i++
		}
	}
	return nil
}

// name checks one decoded name and notes what the current object says.
func (s *pdfScanner) name(n string) error {
	if why, bad := pdfBanned[n]; bad {
		if n == "Encrypt" {
			return unsupported("encrypted PDFs are not accepted")
		}
		return unsupported("the PDF contains active content (%s, /%s)", why, n)
	}
	switch {
	case n == "ObjStm":
		s.objStm = true
	case n == "FlateDecode" || n == "Fl":
		s.flate = true
	case n == "DecodeParms" || n == "DP":
		s.decodeParms = true
	case pdfFilters[n]:
		s.otherFilter = true
	}
	return nil
}

// stream handles the body of a stream whose keyword ends at i, returning
// where scanning goes on (after "endstream").
func (s *pdfScanner) stream(b []byte, i int) (int, error) {
	switch {
	case bytes.HasPrefix(b[i:], []byte("\r\n")):
		i += 2
	case i < len(b) && (b[i] == '\n' || b[i] == '\r'):
		i++
	}
	end := bytes.Index(b[i:], []byte("endstream"))
	if end < 0 {
		return 0, unsupported("a damaged PDF (a stream without endstream)")
	}
	body := b[i : i+end]
	next := i + end + len("endstream")
	objStm, flate, other, parms := s.objStm, s.flate, s.otherFilter, s.decodeParms
	s.objStm, s.flate, s.otherFilter, s.decodeParms = false, false, false, false
	if !objStm {
		for _, lit := range pdfRawBanned {
			for off := 0; ; {
				k := bytes.Index(body[off:], lit)
				if k < 0 {
					break
				}
				after := off + k + len(lit)
				if after >= len(body) || !isPDFRegular(body[after]) {
					return 0, unsupported("the PDF contains active content (%s)", lit)
				}
				off = after
			}
		}
		return next, nil
	}
	if other || parms {
		return 0, unsupported("the PDF has an object stream that cannot be inspected (filter or parameters other than plain FlateDecode)")
	}
	if !flate {
		return next, s.scan(body, true)
	}
	zr, err := zlib.NewReader(bytes.NewReader(body))
	if err != nil {
		return 0, unsupported("the PDF has a damaged object stream: %v", err)
	}
	var out bytes.Buffer
	// An inflate error (truncation, bad checksum) still leaves what a lenient
	// reader would see too: scan that.
	n, _ := io.Copy(&out, io.LimitReader(zr, s.budget+1))
	if n > s.budget {
		return 0, unsupported("the PDF's compressed objects are too large once inflated")
	}
	s.budget -= n
	return next, s.scan(out.Bytes(), true)
}

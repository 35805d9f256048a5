package documents

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// Kind is the detected type of an accepted document.
type Kind string

// The accepted kinds.
const (
	// KindJPEG is a JPEG image (starts with FF D8 FF), re-encoded on intake.
	KindJPEG Kind = "jpeg"
	// KindPNG is a PNG image, re-encoded on intake.
	KindPNG Kind = "png"
	// KindPDF is a PDF document without active content, kept as uploaded.
	KindPDF Kind = "pdf"
	// KindDOC is a binary Word document (OLE2) without macros, kept as uploaded.
	KindDOC Kind = "doc"
	// KindDOCX is an Office Open XML Word document without macros, repacked.
	KindDOCX Kind = "docx"
)

// Valid reports whether k is one of the accepted kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindJPEG, KindPNG, KindPDF, KindDOC, KindDOCX:
		return true
	}
	return false
}

// Default limits, used for every zero or negative field of [Limits].
const (
	DefaultMaxBytes           int64   = 10 << 20   // 10 MiB
	DefaultMaxPixels          int64   = 40_000_000 // 40 MP
	DefaultMaxSide            int     = 10_000     // px on either side
	DefaultMaxZipEntries      int     = 1000
	DefaultMaxZipUncompressed int64   = 100 << 20 // 100 MiB
	DefaultMaxZipRatio        float64 = 100
)

// Limits bounds what Inspect accepts and how much work it does. A zero or
// negative field takes its default.
type Limits struct {
	// MaxBytes is the largest upload accepted (default 10 MiB); more is
	// ErrTooLarge.
	MaxBytes int64
	// MaxPixels is the largest width×height of an image (default 40 MP); more
	// is ErrUnsupported ("image too large in pixels").
	MaxPixels int64
	// MaxSide is the largest width or height of an image (default 10 000 px);
	// more is ErrUnsupported ("image too large in pixels").
	MaxSide int
	// MaxZipEntries is the largest number of entries in a DOCX (default 1000).
	MaxZipEntries int
	// MaxZipUncompressed bounds the total uncompressed size of a DOCX, and
	// the total decoded size of the streams of a PDF, counting each filter's
	// output (default 100 MiB).
	MaxZipUncompressed int64
	// MaxZipRatio bounds uncompressed/compressed for each DOCX entry larger
	// than 4 KiB (default 100).
	MaxZipRatio float64
}

// DefaultLimits returns the limits used when a field is left zero.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:           DefaultMaxBytes,
		MaxPixels:          DefaultMaxPixels,
		MaxSide:            DefaultMaxSide,
		MaxZipEntries:      DefaultMaxZipEntries,
		MaxZipUncompressed: DefaultMaxZipUncompressed,
		MaxZipRatio:        DefaultMaxZipRatio,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = d.MaxPixels
	}
	if l.MaxSide <= 0 {
		l.MaxSide = d.MaxSide
	}
	if l.MaxZipEntries <= 0 {
		l.MaxZipEntries = d.MaxZipEntries
	}
	if l.MaxZipUncompressed <= 0 {
		l.MaxZipUncompressed = d.MaxZipUncompressed
	}
	if !(l.MaxZipRatio > 0) { // also catches NaN
		l.MaxZipRatio = d.MaxZipRatio
	}
	return l
}

var (
	// ErrTooLarge means the upload is over Limits.MaxBytes (HTTP 413).
	ErrTooLarge = errors.New("document too large")
	// ErrUnsupported means the upload is not an accepted document (HTTP 415).
	// Inspect wraps it with a reason naming what is wrong.
	ErrUnsupported = errors.New("unsupported document")
)

// unsupported returns an error wrapping ErrUnsupported with a reason.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// Document is an accepted, sanitised upload.
type Document struct {
	// Kind is the type detected from the content.
	Kind Kind
	// Data is what to store: the re-encoded image, the repacked DOCX, or the
	// PDF or DOC as uploaded.
	Data []byte
	// Width and Height are the pixel dimensions of Data for images (after the
	// EXIF orientation was applied); zero otherwise.
	Width, Height int
	// SHA256 is the lower-case hex SHA-256 of the bytes as uploaded (not of
	// Data), for the audit record and for spotting repeated submissions.
	SHA256 string
}

// Signatures.
var (
	sigJPEG = []byte{0xFF, 0xD8, 0xFF}
	sigPNG  = []byte{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}
	sigPDF  = []byte("%PDF-")
	sigCFB  = []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}
	sigZip  = []byte("PK\x03\x04")
)

// Inspect reads an upload from r, at most lim.MaxBytes+1 bytes of it, decides
// its type by content (never by file name or client Content-Type), and returns
// the sanitised document, or an error wrapping ErrTooLarge or ErrUnsupported.
// A read error from r is returned wrapping ErrUnsupported as well.
//
// PDF scanning is bounded and fails closed, but is not a full PDF parser. The
// file is tokenised as readers do (strings, comments, dictionaries, #xx
// escapes in names) and refused if any name, also inside a string or
// comment, is /JavaScript, /JS, /Launch, /EmbeddedFile(s), /OpenAction, /AA,
// /XFA, /RichMedia, /GoToR, /GoToE, /ImportData, /SubmitForm or /Encrypt.
// /OpenAction is refused outright, not only with JavaScript: a scan cannot
// follow the indirect reference it usually holds. Every stream is decoded
// through its filters (FlateDecode, with PNG or TIFF predictors,
// ASCIIHexDecode, ASCII85Decode, RunLengthDecode, and chains of them),
// within Limits.MaxZipUncompressed in total, and each decoder insists on a
// complete stream. A stream that may hold objects (/Type /ObjStm or not a
// direct name, or /N or /First: readers find object streams through the
// cross-reference stream, not /Type) has its decoded data checked for all
// the names above, and must not hold another stream; other streams (page
// content, images, fonts) are checked, raw and decoded, for the names of
// three letters or more, since /JS and /AA would match binary data by
// chance. Refused as uninspectable: LZWDecode, Crypt and unknown filters;
// image codecs (DCT, JPX, JBIG2, CCITT) anywhere but as the last filter of
// a stream that cannot hold objects; indirect or malformed /Filter and
// /DecodeParms; a stream key given twice; external stream data (/F). Refused
// as damaged: unbalanced or unterminated objects, dictionary keys that are
// not names, a "stream" keyword not right after a dictionary, a direct
// /Length that reaches past the first "endstream" to another, and an object
// header ("12 0 obj") or trailer inside a string, comment or stream data,
// where a reader rebuilding a broken cross-reference table would find it.
// Limits: a stream without /N or /First that a reader nevertheless takes for
// an object stream is checked only for the longer names; and active content
// that needs none of the listed names (for instance a /URI action) is not
// looked for. The reviewer download is therefore still served as an
// attachment under CSP sandbox (THREATS §4.5).
func Inspect(r io.Reader, lim Limits) (*Document, error) {
	lim = lim.withDefaults()
	if lim.MaxBytes == math.MaxInt64 {
		lim.MaxBytes-- // so that MaxBytes+1 does not overflow
	}
	data, err := io.ReadAll(io.LimitReader(r, lim.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the upload: %v", ErrUnsupported, err)
	}
	if int64(len(data)) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: the upload is over %d bytes", ErrTooLarge, lim.MaxBytes)
	}
	return inspectBytes(data, lim)
}

func inspectBytes(data []byte, lim Limits) (*Document, error) {
	if len(data) == 0 {
		return nil, unsupported("the file is empty")
	}
	sum := sha256.Sum256(data)
	var (
		doc *Document
		err error
	)
	switch {
	case bytes.HasPrefix(data, sigJPEG):
		doc, err = inspectJPEG(data, lim)
	case bytes.HasPrefix(data, sigPNG):
		doc, err = inspectPNG(data, lim)
	case bytes.HasPrefix(data, sigPDF):
		doc, err = inspectPDF(data, lim)
	case bytes.HasPrefix(data, sigCFB):
		doc, err = inspectDOC(data)
	case bytes.HasPrefix(data, sigZip):
		doc, err = inspectDOCX(data, lim)
	default:
		return nil, unsupported("the %s format is not accepted (only JPEG, PNG, PDF, DOC and DOCX are)", describe(data))
	}
	if err != nil {
		return nil, err
	}
	doc.SHA256 = hex.EncodeToString(sum[:])
	return doc, nil
}

// describe names the detected type of data for an error message.
func describe(data []byte) string {
	m := mimetype.Detect(data)
	s, _, _ := strings.Cut(m.String(), ";")
	if s == "" || s == "application/octet-stream" {
		return "unrecognised"
	}
	return s
}

// ContentType is the server-chosen media type for serving d.
func (d *Document) ContentType() string {
	switch d.Kind {
	case KindJPEG:
		return "image/jpeg"
	case KindPNG:
		return "image/png"
	case KindPDF:
		return "application/pdf"
	case KindDOC:
		return "application/msword"
	case KindDOCX:
		return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
	}
	return "application/octet-stream"
}

// Filename is the server-chosen download name for d ("document.jpg" and so
// on); the user's file name is never used.
func (d *Document) Filename() string {
	switch d.Kind {
	case KindJPEG:
		return "document.jpg"
	case KindPNG:
		return "document.png"
	case KindPDF:
		return "document.pdf"
	case KindDOC:
		return "document.doc"
	case KindDOCX:
		return "document.docx"
	}
	return "document.bin"
}

// Inline reports whether d may be shown inline (in an <img> on the reviewer
// page): true only for the re-encoded images. Everything else is served as an
// attachment.
func (d *Document) Inline() bool {
	return d.Kind == KindJPEG || d.Kind == KindPNG
}

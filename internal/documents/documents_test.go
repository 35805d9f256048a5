package documents

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

// inspect runs Inspect with default limits over b.
func inspect(b []byte) (*Document, error) { return Inspect(bytes.NewReader(b), Limits{}) }

func TestInspectAcceptsAndRefuses(t *testing.T) {
	plainJPEG := encodeJPEG(t, twoColour(32, 16, red, blue))
	plainPNG := encodePNG(t, twoColour(32, 16, red, blue))
	polyglot := append(append([]byte{}, plainJPEG...), buildZip(t, zipFile{"evil.html", htmlDoc, zip.Store})...)
	polyglot = append(polyglot, secretTrailer...)

	tests := []struct {
		name   string
		in     []byte
		kind   Kind   // "" when refused
		err    error  // ErrUnsupported or ErrTooLarge when refused
		reason string // substring of the error
	}{
		// Images.
		{name: "jpeg", in: plainJPEG, kind: KindJPEG},
		{name: "jpeg with exif gps icc comment", in: jpegWithMetadata(t, twoColour(32, 16, red, blue), 1), kind: KindJPEG},
		{name: "jpeg polyglot with trailing zip", in: polyglot, kind: KindJPEG},
		{name: "png", in: plainPNG, kind: KindPNG},
		{name: "png with text chunks", in: pngWithText(t), kind: KindPNG},
		{name: "png with trailing data", in: append(append([]byte{}, plainPNG...), secretTrailer...), kind: KindPNG},
		{name: "png declaring 100000x100000", in: hugePNGHeader(100000, 100000), err: ErrUnsupported, reason: "image too large in pixels"},
		{name: "png over one side", in: hugePNGHeader(20000, 10), err: ErrUnsupported, reason: "image too large in pixels"},
		{name: "jpeg declaring 60000x60000", in: hugeJPEGHeader(60000, 60000), err: ErrUnsupported, reason: "image too large in pixels"},
		{name: "jpeg with too many scans", in: manyScansJPEG(100), err: ErrUnsupported, reason: "scans"},
		{name: "truncated jpeg", in: plainJPEG[:len(plainJPEG)/2], err: ErrUnsupported, reason: "JPEG"},
		{name: "jpeg signature only", in: []byte{0xFF, 0xD8, 0xFF}, err: ErrUnsupported, reason: "JPEG"},
		{name: "png signature only", in: sigPNG, err: ErrUnsupported, reason: "PNG"},
		{name: "png with bad crc", in: func() []byte { b := append([]byte{}, plainPNG...); b[20] ^= 1; return b }(), err: ErrUnsupported, reason: "PNG"},

		// Formats that are not accepted, whatever they are called.
		{name: "html named .png", in: htmlDoc, err: ErrUnsupported, reason: "text/html format is not accepted"},
		{name: "svg", in: svgDoc, err: ErrUnsupported, reason: "image/svg+xml format is not accepted"},
		{name: "gif", in: gifDoc, err: ErrUnsupported, reason: "image/gif format is not accepted"},
		{name: "webp", in: webpDoc, err: ErrUnsupported, reason: "image/webp format is not accepted"},
		{name: "heic", in: heicDoc, err: ErrUnsupported, reason: "image/heic format is not accepted"},
		{name: "elf executable", in: elfDoc, err: ErrUnsupported, reason: "format is not accepted"},
		{name: "windows executable", in: peDoc, err: ErrUnsupported, reason: "format is not accepted"},
		{name: "text", in: plainTxt, err: ErrUnsupported, reason: "text/plain format is not accepted"},
		{name: "empty", in: nil, err: ErrUnsupported, reason: "empty"},
		{name: "pdf signature not at start", in: append([]byte("\n"), minimalPDF()...), err: ErrUnsupported, reason: "not accepted"},

		// PDF.
		{name: "pdf", in: minimalPDF(), kind: KindPDF},
		{name: "pdf with trailing whitespace", in: append(minimalPDF(), "\r\n\x00 "...), kind: KindPDF},
		{name: "pdf javascript", in: pdfWith("<< /Type /Catalog /Pages 2 0 R /Names << /JavaScript 5 0 R >> >>", "<< /S /JavaScript /JS (app.alert(1)) >>"), err: ErrUnsupported, reason: "/JavaScript"},
		{name: "pdf js only", in: pdfWith("<< /Type /Catalog /Pages 2 0 R >>", "<< /JS (app.alert(1)) >>"), err: ErrUnsupported, reason: "/JS"},
		{name: "pdf hex-escaped name", in: pdfWith("<< /Type /Catalog /Pages 2 0 R >>", "<< /S /J#61va#53cript >>"), err: ErrUnsupported, reason: "/JavaScript"},
		{name: "pdf open action", in: pdfWith("<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>", "<< /S /JavaScript >>"), err: ErrUnsupported, reason: "active content"},
		{name: "pdf open action without javascript (refused: cannot follow references)", in: pdfWith("<< /Type /Catalog /Pages 2 0 R /OpenAction [3 0 R /Fit] >>"), err: ErrUnsupported, reason: "/OpenAction"},
		{name: "pdf launch", in: pdfWith("<< /Type /Catalog /Pages 2 0 R >>", "<< /S /Launch /F (calc.exe) >>"), err: ErrUnsupported, reason: "/Launch"},
		{name: "pdf embedded file", in: pdfWith("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /EmbeddedFile /Length 0 >>\nstream\n\nendstream"), err: ErrUnsupported, reason: "/EmbeddedFile"},
		{name: "pdf additional actions", in: pdfWith("<< /Type /Catalog /Pages 2 0 R /AA << /O 5 0 R >> >>", "<< /S /URI /URI (http://x) >>"), err: ErrUnsupported, reason: "/AA"},
		{name: "pdf encrypted", in: buildPDF(pdfBase, "/Encrypt 5 0 R "), err: ErrUnsupported, reason: "encrypted"},
		{name: "pdf javascript in object stream", in: pdfObjStm("<< /S /JavaScript /JS (x) >>"), err: ErrUnsupported, reason: "/JavaScript"},
		{name: "pdf clean object stream", in: pdfObjStm("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"), kind: KindPDF},
		{name: "pdf object stream with other filter", in: buildPDF(append(append([]string{}, pdfBase...), "<< /Type /ObjStm /Filter /LZWDecode /Length 1 >>\nstream\nx\nendstream"), ""), err: ErrUnsupported, reason: "cannot be inspected"},
		{name: "pdf javascript inside a plain stream", in: pdfWith("<< /Type /Catalog /Pages 2 0 R >>", "<< /Length 30 >>\nstream\n7 0 obj << /S /JavaScript >>\nendstream"), err: ErrUnsupported, reason: "/JavaScript"},
		{name: "pdf without eof", in: bytes.TrimSuffix(minimalPDF(), []byte("%%EOF\n")), err: ErrUnsupported, reason: "EOF"},
		{name: "pdf with data after eof", in: append(minimalPDF(), buildZip(t, zipFile{"a", []byte("b"), zip.Store})...), err: ErrUnsupported, reason: "EOF"},
		{name: "pdf stream without end", in: []byte("%PDF-1.4\n1 0 obj << >> stream\nabc\n%%EOF\n"), err: ErrUnsupported, reason: "endstream"},
		{name: "pdf name in comment still counts", in: pdfWith("<< /Type /Catalog /Pages 2 0 R >> % /JavaScript"), err: ErrUnsupported, reason: "/JavaScript"},
		{name: "pdf longer name is fine", in: pdfWith("<< /Type /Catalog /Pages 2 0 R /JSX 1 /AAB 2 >>"), kind: KindPDF},

		// DOCX and other zips.
		{name: "docx", in: minimalDOCX(t), kind: KindDOCX},
		{name: "docx with hyperlink", in: buildZip(t, docxFiles(zipFile{"word/_rels/document.xml.rels", []byte(docRels(`<Relationship Id="rId5" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" Target="https://example.com/" TargetMode="External"/>`)), zip.Deflate})...), kind: KindDOCX},
		{name: "docx with directory entries", in: buildZip(t, append([]zipFile{{"word/", nil, zip.Store}}, docxFiles()...)...), kind: KindDOCX},
		{name: "docx with vbaProject.bin", in: buildZip(t, docxFiles(zipFile{"word/vbaProject.bin", []byte("VBA"), zip.Deflate})...), err: ErrUnsupported, reason: "macros"},
		{name: "docx with vbaProject.bin elsewhere", in: buildZip(t, docxFiles(zipFile{"custom/VBAPROJECT.BIN", []byte("VBA"), zip.Deflate})...), err: ErrUnsupported, reason: "macros"},
		{name: "docm content type", in: buildZip(t, zipFile{"[Content_Types].xml", []byte(ctDOCM), zip.Deflate}, zipFile{"word/document.xml", []byte(wordBody), zip.Deflate}), err: ErrUnsupported, reason: "macros"},
		{name: "docx with ole object", in: buildZip(t, docxFiles(zipFile{"word/embeddings/oleObject1.bin", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "embedded objects"},
		{name: "docx with nested archive", in: buildZip(t, docxFiles(zipFile{"word/media/inner.zip", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "other archives"},
		{name: "docx with external template", in: buildZip(t, docxFiles(zipFile{"word/_rels/settings.xml.rels", []byte(docRels(`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="https://evil.example/t.dotm" TargetMode="External"/>`)), zip.Deflate})...), err: ErrUnsupported, reason: "linked documents"},
		{name: "docx with external image", in: buildZip(t, docxFiles(zipFile{"word/_rels/document.xml.rels", []byte(docRels(`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="https://canary.example/x.png" TargetMode="External"/>`)), zip.Deflate})...), err: ErrUnsupported, reason: "external content"},
		{name: "docx with altChunk", in: buildZip(t, docxFiles(zipFile{"word/_rels/document.xml.rels", []byte(docRels(`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/aFChunk" Target="chunk.mht"/>`)), zip.Deflate})...), err: ErrUnsupported, reason: "aFChunk"},
		{name: "docx with damaged content types", in: buildZip(t, zipFile{"[Content_Types].xml", []byte("<Types"), zip.Deflate}, zipFile{"word/document.xml", []byte(wordBody), zip.Deflate}), err: ErrUnsupported, reason: "content types"},
		{name: "docx without content types", in: buildZip(t, zipFile{"word/document.xml", []byte(wordBody), zip.Deflate}), err: ErrUnsupported, reason: "not a Word document"},
		{name: "xlsx", in: buildZip(t, zipFile{"[Content_Types].xml", []byte(ctXLSX), zip.Deflate}, zipFile{"_rels/.rels", []byte(relsXLSX), zip.Deflate}, zipFile{"xl/workbook.xml", []byte("<workbook/>"), zip.Deflate}), err: ErrUnsupported, reason: "not a Word document"},
		{name: "plain zip", in: buildZip(t, zipFile{"readme.txt", []byte("hello"), zip.Deflate}), err: ErrUnsupported, reason: "not a Word document"},
		{name: "zip bomb 200MB", in: zipBomb(t), err: ErrUnsupported, reason: "too large once uncompressed"},
		{name: "zip bomb with lying sizes", in: lyingZip(t), err: ErrUnsupported, reason: "does not match its header"},
		{name: "zip with 5000 entries", in: manyEntriesZip(t, 5000), err: ErrUnsupported, reason: "too many entries"},
		{name: "zip with overlapping entries", in: overlappingZip(t), err: ErrUnsupported, reason: "overlapping"},
		{name: "zip with duplicate entries", in: buildZip(t, docxFiles(zipFile{"word/document.xml", []byte(wordBody), zip.Deflate})...), err: ErrUnsupported, reason: "duplicate"},
		{name: "zip with case-duplicate entries", in: buildZip(t, docxFiles(zipFile{"WORD/Document.xml", []byte(wordBody), zip.Deflate})...), err: ErrUnsupported, reason: "duplicate"},
		{name: "zip with dot-dot", in: buildZip(t, docxFiles(zipFile{"word/../../etc/passwd", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "unsafe path"},
		{name: "zip with absolute path", in: buildZip(t, docxFiles(zipFile{"/etc/passwd", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "unsafe path"},
		{name: "zip with backslash", in: buildZip(t, docxFiles(zipFile{`word\..\x`, []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "unsafe path"},
		{name: "zip with drive letter", in: buildZip(t, docxFiles(zipFile{"C:/x", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "unsafe path"},
		{name: "docx with percent-encoded macro part", in: buildZip(t, docxFiles(zipFile{"word/%61ctiveX/%61ctiveX1.bin", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "ActiveX"},
		{name: "zip with percent-encoded duplicate", in: buildZip(t, docxFiles(zipFile{"word/document%2Exml", []byte(wordBody), zip.Deflate})...), err: ErrUnsupported, reason: "duplicate"},
		{name: "zip with percent-encoded dot-dot", in: buildZip(t, docxFiles(zipFile{"word/%2E%2E/%2E%2E/x", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "unsafe path"},
		{name: "zip with bad percent escape", in: buildZip(t, docxFiles(zipFile{"word/%zz", []byte("x"), zip.Deflate})...), err: ErrUnsupported, reason: "unsafe path"},
		{name: "zip truncated", in: minimalDOCX(t)[:100], err: ErrUnsupported, reason: "zip"},

		// DOC.
		{name: "doc", in: wordCFB(t, fib(4096, 0)), kind: KindDOC},
		{name: "doc in mini stream", in: wordCFB(t, fib(512, 0), cfbNode{name: "1Table", typ: 2, data: make([]byte, 300)}), kind: KindDOC},
		{name: "doc with empty ObjectPool", in: wordCFB(t, fib(4096, 0), cfbNode{name: "ObjectPool", typ: 1}), kind: KindDOC},
		{name: "doc with Macros storage", in: wordCFB(t, fib(4096, 0), cfbNode{name: "Macros", typ: 1}), err: ErrUnsupported, reason: "macros"},
		{name: "doc with _VBA_PROJECT_CUR", in: wordCFB(t, fib(4096, 0), cfbNode{name: "_VBA_PROJECT_CUR", typ: 1}), err: ErrUnsupported, reason: "macros"},
		{name: "doc with VBA storage", in: wordCFB(t, fib(4096, 0), cfbNode{name: "vba", typ: 1}), err: ErrUnsupported, reason: "macros"},
		{name: "doc with embedded object", in: wordCFB(t, fib(4096, 0), cfbNode{name: "ObjectPool", typ: 1, child: 3}, cfbNode{name: "_1234", typ: 1}), err: ErrUnsupported, reason: "embedded objects"},
		{name: "doc encrypted", in: wordCFB(t, fib(4096, fibEncrypted)), err: ErrUnsupported, reason: "encrypted"},
		{name: "doc without Word header", in: wordCFB(t, make([]byte, 4096)), err: ErrUnsupported, reason: "no Word header"},
		{name: "ole without WordDocument", in: buildCFB(t, []cfbNode{{name: "Root Entry", typ: 5, left: noSid, right: noSid, child: 1}, {name: "Workbook", typ: 2, left: noSid, right: noSid, child: noSid, data: make([]byte, 4096)}}), err: ErrUnsupported, reason: "not a Word document"},
		{name: "ole header only", in: append(append([]byte{}, sigCFB...), make([]byte, 100)...), err: ErrUnsupported, reason: "OLE2"},
		{name: "doc with FAT loop", in: func() []byte {
			b := wordCFB(t, fib(4096, 0))
			// The directory is sector 1: make its FAT entry point to itself.
			b[512+4*1] = 1
			b[512+4*1+1], b[512+4*1+2], b[512+4*1+3] = 0, 0, 0
			return b
		}(), err: ErrUnsupported, reason: "loops"},
		{name: "doc truncated", in: func() []byte { b := wordCFB(t, fib(4096, 0)); return b[:len(b)-1024] }(), err: ErrUnsupported, reason: "OLE2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := inspect(tt.in)
			if tt.kind != "" {
				if err != nil {
					t.Fatalf("Inspect: %v", err)
				}
				if doc.Kind != tt.kind {
					t.Fatalf("Kind = %q, want %q", doc.Kind, tt.kind)
				}
				if len(doc.Data) == 0 || len(doc.SHA256) != 64 {
					t.Fatalf("Data %d bytes, SHA256 %q", len(doc.Data), doc.SHA256)
				}
				// The sanitised form is accepted again, as the same kind.
				again, err := inspect(doc.Data)
				if err != nil || again.Kind != doc.Kind {
					t.Fatalf("re-inspect: %v, %v", again, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Inspect accepted it as %q", doc.Kind)
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v does not wrap %v", err, tt.err)
			}
			if errors.Is(err, ErrUnsupported) && errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps both", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}

func TestInspectStripsImageMetadata(t *testing.T) {
	jpegIn := jpegWithMetadata(t, twoColour(32, 16, red, blue), 1)
	jpegPoly := append(append([]byte{}, encodeJPEG(t, twoColour(32, 16, red, blue))...), buildZip(t, zipFile{"x.html", htmlDoc, zip.Store})...)
	jpegPoly = append(jpegPoly, secretTrailer...)
	pngIn := append(pngWithText(t), secretTrailer...)

	tests := []struct {
		name   string
		in     []byte
		absent []string
	}{
		{"jpeg exif and gps", jpegIn, []string{"Exif", secretDescription, string(gpsRationals()), "ICC_PROFILE", secretComment, secretXMP, "ns.adobe.com"}},
		{"jpeg polyglot", jpegPoly, []string{"PK\x03\x04", "PK\x05\x06", "<script>", secretTrailer}},
		{"png text and trailer", pngIn, []string{"tEXt", "tIME", secretText, secretTrailer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range tt.absent { // the fixture does plant them
				if !bytes.Contains(tt.in, []byte(s)) {
					t.Fatalf("fixture lacks %q", s)
				}
			}
			doc, err := inspect(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.absent {
				if bytes.Contains(doc.Data, []byte(s)) {
					t.Errorf("output still holds %q", s)
				}
			}
			if doc.Width != 32 || doc.Height != 16 {
				t.Errorf("dimensions %d×%d", doc.Width, doc.Height)
			}
			if bytes.Contains(doc.Data, []byte{0xFF, 0xE1}) && doc.Kind == KindJPEG {
				if i := bytes.Index(doc.Data, []byte{0xFF, 0xE1}); i < 64 {
					t.Errorf("output has an APP1 segment")
				}
			}
		})
	}
}

func TestInspectAppliesEXIFOrientation(t *testing.T) {
	// 64×32: left half red, right half blue.
	tests := []struct {
		orientation int
		w, h        int
		// where red ends up: probe points that must be red / blue
		red, blue image.Point
	}{
		{1, 64, 32, image.Pt(8, 16), image.Pt(56, 16)},
		{2, 64, 32, image.Pt(56, 16), image.Pt(8, 16)},
		{3, 64, 32, image.Pt(56, 16), image.Pt(8, 16)},
		{4, 64, 32, image.Pt(8, 16), image.Pt(56, 16)},
		{5, 32, 64, image.Pt(16, 8), image.Pt(16, 56)},
		{6, 32, 64, image.Pt(16, 8), image.Pt(16, 56)},
		{7, 32, 64, image.Pt(16, 56), image.Pt(16, 8)},
		{8, 32, 64, image.Pt(16, 56), image.Pt(16, 8)},
		{9, 64, 32, image.Pt(8, 16), image.Pt(56, 16)}, // invalid: ignored
	}
	for _, tt := range tests {
		t.Run(string(rune('0'+tt.orientation)), func(t *testing.T) {
			doc, err := inspect(jpegWithMetadata(t, twoColour(64, 32, red, blue), tt.orientation))
			if err != nil {
				t.Fatal(err)
			}
			if doc.Width != tt.w || doc.Height != tt.h {
				t.Fatalf("dimensions %d×%d, want %d×%d", doc.Width, doc.Height, tt.w, tt.h)
			}
			img, err := jpeg.Decode(bytes.NewReader(doc.Data))
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != tt.w || b.Dy() != tt.h {
				t.Fatalf("encoded %v", b)
			}
			isRed := func(p image.Point) bool {
				r, g, b, _ := img.At(p.X, p.Y).RGBA()
				return r > 0xC000 && g < 0x4000 && b < 0x4000
			}
			if !isRed(tt.red) || isRed(tt.blue) {
				t.Fatalf("orientation %d: red at %v? %v; at %v? %v", tt.orientation, tt.red, isRed(tt.red), tt.blue, isRed(tt.blue))
			}
		})
	}
}

func TestInspectPNGColourModels(t *testing.T) {
	rgba := twoColour(8, 8, red, blue)
	gray := image.NewGray(image.Rect(0, 0, 8, 8))
	gray16 := image.NewGray16(image.Rect(0, 0, 8, 8))
	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 8, 8))
	pal := image.NewPaletted(image.Rect(0, 0, 8, 8), []color.Color{red, blue})
	for _, img := range []image.Image{rgba, gray, gray16, nrgba64, pal} {
		doc, err := inspect(encodePNG(t, img))
		if err != nil {
			t.Fatalf("%T: %v", img, err)
		}
		back, err := png.Decode(bytes.NewReader(doc.Data))
		if err != nil || back.Bounds() != img.Bounds() {
			t.Fatalf("%T: %v %v", img, err, back)
		}
	}
	// 16-bit at the pixel cap needs 8 bytes a pixel: over the decoded budget.
	big := image.NewNRGBA64(image.Rect(0, 0, 100, 100))
	_, err := Inspect(bytes.NewReader(encodePNG(t, big)), Limits{MaxPixels: 10000})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "colour depth") {
		t.Fatalf("16-bit at the cap: %v", err)
	}
}

// TestHugeDimensionsDoNotAllocate checks that the pixel gate fires before a
// pixel buffer exists: 100000×100000 RGBA would be 40 GB.
func TestHugeDimensionsDoNotAllocate(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"png 100000x100000", hugePNGHeader(100000, 100000)},
		{"png 40001x1000", hugePNGHeader(40001, 1000)},
		{"jpeg 65535x65535", hugeJPEGHeader(65535, 65535)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := inspect(tt.in)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "image too large in pixels") {
				t.Fatalf("err = %v", err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Fatalf("allocated %d bytes refusing it", got)
			}
			allocs := testing.AllocsPerRun(10, func() { inspect(tt.in) })
			if allocs > 200 {
				t.Fatalf("%v allocations refusing it", allocs)
			}
		})
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// endless yields an endless stream of one byte.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestInspectSize(t *testing.T) {
	pdf := minimalPDF()
	tests := []struct {
		name    string
		r       io.Reader
		lim     Limits
		err     error
		maxRead int64
	}{
		{"exactly the limit", bytes.NewReader(pdf), Limits{MaxBytes: int64(len(pdf))}, nil, int64(len(pdf))},
		{"one byte over", bytes.NewReader(pdf), Limits{MaxBytes: int64(len(pdf)) - 1}, ErrTooLarge, int64(len(pdf))},
		{"endless stream, small limit", endless('A'), Limits{MaxBytes: 1000}, ErrTooLarge, 1001},
		{"endless stream, default limit", endless('%'), Limits{}, ErrTooLarge, DefaultMaxBytes + 1},
		{"read error", failing{}, Limits{}, ErrUnsupported, 0},
		{"largest limit", bytes.NewReader(pdf), Limits{MaxBytes: math.MaxInt64}, nil, int64(len(pdf))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := &countingReader{r: tt.r}
			_, err := Inspect(cr, tt.lim)
			if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if cr.n > tt.maxRead {
				t.Fatalf("read %d bytes, at most %d expected", cr.n, tt.maxRead)
			}
		})
	}
}

func TestZipBombIsFastAndSmall(t *testing.T) {
	for name, z := range map[string][]byte{"truthful": zipBomb(t), "lying": lyingZip(t)} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := inspect(z)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v", err)
			}
			if took > 2*time.Second {
				t.Fatalf("took %v", took)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
				t.Fatalf("allocated %d bytes", got)
			}
		})
	}
}

func TestZipRatioAndLimits(t *testing.T) {
	zeros := make([]byte, 1<<20) // compresses about 1000:1
	tests := []struct {
		name   string
		lim    Limits
		files  []zipFile
		reason string
	}{
		{"ratio", Limits{}, docxFiles(zipFile{"word/media/a.bmp", zeros, zip.Deflate}), "compressed more than 100:1"},
		{"ratio allowed higher", Limits{MaxZipRatio: 5000}, docxFiles(zipFile{"word/media/a.bmp", zeros, zip.Deflate}), ""},
		{"total", Limits{MaxZipUncompressed: 1 << 19, MaxZipRatio: 5000}, docxFiles(zipFile{"word/media/a.bmp", zeros, zip.Deflate}), "too large once uncompressed"},
		{"entries", Limits{MaxZipEntries: 3}, docxFiles(zipFile{"word/x.xml", nil, zip.Store}), "too many entries"},
		{"small parts ignore the ratio", Limits{MaxZipRatio: 1.5}, docxFiles(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Inspect(bytes.NewReader(buildZip(t, tt.files...)), tt.lim)
			if tt.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("err = %v, want %q", err, tt.reason)
			}
		})
	}
}

func TestDOCXIsRepacked(t *testing.T) {
	in := minimalDOCX(t)
	// A comment and junk after the archive.
	in = append(in[:len(in)-2], 5, 0)
	in = append(in, "hello"...)
	doc, err := inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(doc.Data, []byte("hello")) {
		t.Fatal("the comment survived")
	}
	zr, err := zip.NewReader(bytes.NewReader(doc.Data), int64(len(doc.Data)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		rc.Close()
	}
	if got := strings.Join(names, ","); got != "[Content_Types].xml,_rels/.rels,word/document.xml" {
		t.Fatalf("entries %s", got)
	}
}

func TestInspectHashesTheUpload(t *testing.T) {
	in := encodePNG(t, twoColour(4, 4, red, blue))
	doc, err := inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(in)
	if doc.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("SHA256 %q is not that of the upload", doc.SHA256)
	}
}

func TestServing(t *testing.T) {
	tests := []struct {
		kind     Kind
		ct, name string
		inline   bool
	}{
		{KindJPEG, "image/jpeg", "document.jpg", true},
		{KindPNG, "image/png", "document.png", true},
		{KindPDF, "application/pdf", "document.pdf", false},
		{KindDOC, "application/msword", "document.doc", false},
		{KindDOCX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "document.docx", false},
		{Kind("gif"), "application/octet-stream", "document.bin", false},
	}
	for _, tt := range tests {
		d := &Document{Kind: tt.kind}
		if d.ContentType() != tt.ct || d.Filename() != tt.name || d.Inline() != tt.inline {
			t.Errorf("%s: %q %q %v", tt.kind, d.ContentType(), d.Filename(), d.Inline())
		}
		if tt.kind.Valid() == (tt.ct == "application/octet-stream") {
			t.Errorf("%s: Valid() = %v", tt.kind, tt.kind.Valid())
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{MaxBytes: -1, MaxZipRatio: -3}.withDefaults()
	if got != DefaultLimits() {
		t.Fatalf("%+v", got)
	}
	custom := Limits{MaxBytes: 1, MaxPixels: 2, MaxSide: 3, MaxZipEntries: 4, MaxZipUncompressed: 5, MaxZipRatio: 6}
	if custom.withDefaults() != custom {
		t.Fatalf("custom limits changed")
	}
}

package documents

import (
	"archive/zip"
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// fuzzLimits keep every fuzz input cheap: 1 MiB uploads, 1 MP images.
var fuzzLimits = Limits{
	MaxBytes:           1 << 20,
	MaxPixels:          1 << 20,
	MaxSide:            4096,
	MaxZipEntries:      1000,
	MaxZipUncompressed: 8 << 20,
}

const (
	fuzzMaxTime  = 5 * time.Second
	fuzzMaxAlloc = 128 << 20 // bytes allocated by one call, at most
)

// allocated is the process's cumulative heap allocation, cheap to read.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// bounded runs fn and fails t when it takes too long or allocates too much.
func bounded(t *testing.T, fn func()) {
	t.Helper()
	a0, t0 := allocated(), time.Now()
	fn()
	if d := time.Since(t0); d > fuzzMaxTime {
		t.Fatalf("took %v", d)
	}
	if a := allocated() - a0; a > fuzzMaxAlloc {
		t.Fatalf("allocated %d bytes", a)
	}
}

// checkResult is the invariant shared by the Inspect fuzzers.
func checkResult(t *testing.T, doc *Document, err error) {
	t.Helper()
	if err != nil {
		u, l := errors.Is(err, ErrUnsupported), errors.Is(err, ErrTooLarge)
		if u == l {
			t.Fatalf("error %v wraps neither or both sentinels", err)
		}
		if doc != nil {
			t.Fatal("a document with an error")
		}
		return
	}
	if doc == nil || !doc.Kind.Valid() || len(doc.Data) == 0 || len(doc.SHA256) != 64 {
		t.Fatalf("bad document %+v", doc)
	}
	if doc.Inline() != (doc.Kind == KindJPEG || doc.Kind == KindPNG) {
		t.Fatal("Inline for a non-image")
	}
}

func seedAll(f *testing.F) {
	small := twoColour(16, 8, red, blue)
	for _, s := range [][]byte{
		encodeJPEG(f, small), jpegWithMetadata(f, small, 6), encodePNG(f, small), pngWithText(f),
		hugePNGHeader(100000, 100000), hugeJPEGHeader(60000, 60000), manyScansJPEG(70),
		minimalPDF(), pdfObjStm("<< /S /JavaScript >>"), pdfObjStm("<< /Type /Font >>"),
		pdfWith("<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>", "<< /S /JavaScript >>"),
		buildPDF(pdfBase, "/Encrypt 5 0 R "),
		minimalDOCX(f), overlappingZip(f), manyEntriesZip(f, 20),
		buildZip(f, docxFiles(zipFile{"word/vbaProject.bin", []byte("VBA"), zip.Deflate})...),
		wordCFB(f, fib(4096, 0)), wordCFB(f, fib(512, 0), cfbNode{name: "1Table", typ: 2, data: make([]byte, 300)}),
		wordCFB(f, fib(4096, 0), cfbNode{name: "Macros", typ: 1}),
		htmlDoc, svgDoc, gifDoc, webpDoc, heicDoc, elfDoc, nil,
	} {
		f.Add(s)
	}
	for _, s := range pdfSeeds(f) {
		f.Add(s)
	}
	for _, s := range append(attackDOCXSeeds(f), attackDOCSeeds(f)...) {
		f.Add(s)
	}
}

// FuzzInspect (THREATS §3.5 FuzzUploadSniff): no panic, bounded time and
// memory, and the result is an accepted kind or an error wrapping exactly one
// of ErrUnsupported and ErrTooLarge. An accepted document is accepted again,
// as the same kind, from its sanitised bytes.
func FuzzInspect(f *testing.F) {
	seedAll(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			doc *Document
			err error
		)
		bounded(t, func() { doc, err = Inspect(bytes.NewReader(data), fuzzLimits) })
		checkResult(t, doc, err)
		if int64(len(data)) > fuzzLimits.MaxBytes && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%d bytes not refused as too large: %v", len(data), err)
		}
		if err != nil {
			return
		}
		again, err := Inspect(bytes.NewReader(doc.Data), fuzzLimits)
		if err != nil {
			t.Fatalf("sanitised %s refused: %v", doc.Kind, err)
		}
		if again.Kind != doc.Kind {
			t.Fatalf("sanitised %s became %s", doc.Kind, again.Kind)
		}
	})
}

// FuzzDOCX (THREATS §3.5 FuzzDOCXInspect) drives the zip path directly,
// whatever the first bytes: no panic, bounded time and memory; an accepted
// package has its required parts, no more entries than allowed, no entry over
// the total, and no macro part.
func FuzzDOCX(f *testing.F) {
	f.Add(minimalDOCX(f))
	f.Add(overlappingZip(f))
	f.Add(manyEntriesZip(f, 1001))
	f.Add(buildZip(f, docxFiles(zipFile{"word/vbaProject.bin", []byte("VBA"), zip.Deflate})...))
	f.Add(buildZip(f, docxFiles(zipFile{"word/_rels/document.xml.rels", []byte(docRels(`<Relationship Id="r" Type="x/image" Target="http://c/" TargetMode="External"/>`)), zip.Deflate})...))
	f.Add(buildZip(f, docxFiles(zipFile{"word/media/z.bin", make([]byte, 1<<20), zip.Deflate})...))
	f.Add(buildZip(f, zipFile{"[Content_Types].xml", []byte(ctXLSX), zip.Deflate}, zipFile{"xl/workbook.xml", nil, zip.Deflate}))
	for _, s := range attackDOCXSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > int(fuzzLimits.MaxBytes) {
			return
		}
		var (
			doc *Document
			err error
		)
		lim := fuzzLimits.withDefaults()
		bounded(t, func() { doc, err = inspectDOCX(data, lim) })
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v does not wrap ErrUnsupported", err)
			}
			return
		}
		zr, err := zip.NewReader(bytes.NewReader(doc.Data), int64(len(doc.Data)))
		if err != nil {
			t.Fatalf("repacked archive unreadable: %v", err)
		}
		if len(zr.File) > lim.MaxZipEntries {
			t.Fatalf("%d entries", len(zr.File))
		}
		var total uint64
		seen := map[string]bool{}
		for _, zf := range zr.File {
			total += zf.UncompressedSize64
			n := strings.ToLower(zf.Name)
			seen[n] = true
			if strings.Contains(n, "vbaproject") || !safeZipName(zf.Name) {
				t.Fatalf("accepted entry %q", zf.Name)
			}
		}
		if total > uint64(lim.MaxZipUncompressed) || !seen["[content_types].xml"] || !seen["word/document.xml"] {
			t.Fatalf("accepted package: total %d, parts %v", total, seen)
		}
		if _, err := inspectDOCX(doc.Data, lim); err != nil {
			t.Fatalf("repacked package refused: %v", err)
		}
	})
}

// FuzzImageGate (THREATS §3.5): an image whose header declares more pixels
// than allowed is refused as "image too large in pixels" without allocating a
// pixel buffer; an accepted image is within the limits and decodes to the
// dimensions reported.
func FuzzImageGate(f *testing.F) {
	small := twoColour(16, 8, red, blue)
	f.Add(encodeJPEG(f, small))
	f.Add(encodePNG(f, small))
	f.Add(jpegWithMetadata(f, small, 8))
	f.Add(hugePNGHeader(100000, 100000))
	f.Add(hugePNGHeader(2000, 2000))
	f.Add(hugeJPEGHeader(60000, 60000))
	f.Add(hugeJPEGHeader(2000, 2000))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > int(fuzzLimits.MaxBytes) {
			return
		}
		lim := fuzzLimits.withDefaults()
		var cfg image.Config
		var cfgErr error
		switch {
		case bytes.HasPrefix(data, sigJPEG):
			cfg, cfgErr = jpeg.DecodeConfig(bytes.NewReader(data))
		case bytes.HasPrefix(data, sigPNG):
			cfg, cfgErr = png.DecodeConfig(bytes.NewReader(data))
		default:
			return
		}
		oversize := cfgErr == nil && (int64(cfg.Width)*int64(cfg.Height) > lim.MaxPixels ||
			cfg.Width > lim.MaxSide || cfg.Height > lim.MaxSide)
		var (
			doc  *Document
			err  error
			heap uint64
		)
		if oversize {
			runtime.GC()
			var a, b runtime.MemStats
			runtime.ReadMemStats(&a)
			doc, err = inspectBytes(data, lim)
			runtime.ReadMemStats(&b)
			heap = b.TotalAlloc - a.TotalAlloc
		} else {
			bounded(t, func() { doc, err = inspectBytes(data, lim) })
		}
		checkResult(t, doc, err)
		if oversize {
			// Refused for its size, or first for having no pixels at all
			// (a zero side, e.g. 12336×0): either way before decoding.
			if err == nil || (!strings.Contains(err.Error(), "image too large in pixels") && !strings.Contains(err.Error(), "scans") &&
				!strings.Contains(err.Error(), "has no pixels")) {
				t.Fatalf("%d×%d not refused for its size: %v", cfg.Width, cfg.Height, err)
			}
			if heap > uint64(len(data))+1<<20 {
				t.Fatalf("refusing %d×%d allocated %d bytes", cfg.Width, cfg.Height, heap)
			}
			return
		}
		if err != nil {
			return
		}
		if int64(doc.Width)*int64(doc.Height) > lim.MaxPixels {
			t.Fatalf("accepted %d×%d", doc.Width, doc.Height)
		}
		var out image.Config
		if doc.Kind == KindJPEG {
			out, err = jpeg.DecodeConfig(bytes.NewReader(doc.Data))
		} else {
			out, err = png.DecodeConfig(bytes.NewReader(doc.Data))
		}
		if err != nil || out.Width != doc.Width || out.Height != doc.Height {
			t.Fatalf("output %v %+v, document says %d×%d", err, out, doc.Width, doc.Height)
		}
	})
}

// FuzzPDF drives the PDF scanner directly, seeded with PDFs that use object
// streams, cross-reference streams, filter chains and predictors: no panic,
// bounded time and memory, errors wrap ErrUnsupported, and an accepted PDF
// is kept as it came.
func FuzzPDF(f *testing.F) {
	f.Add(minimalPDF())
	f.Add(pdfObjStm("<< /S /JavaScript >>"))
	for _, s := range pdfSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > int(fuzzLimits.MaxBytes) {
			return
		}
		var (
			doc *Document
			err error
		)
		lim := fuzzLimits.withDefaults()
		bounded(t, func() { doc, err = inspectPDF(data, lim) })
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v does not wrap ErrUnsupported", err)
			}
			return
		}
		if doc.Kind != KindPDF || !bytes.Equal(doc.Data, data) {
			t.Fatal("accepted PDF altered")
		}
	})
}

// FuzzDOC drives the CFB reader: no panic, bounded time and memory, errors
// wrap ErrUnsupported.
func FuzzDOC(f *testing.F) {
	f.Add(wordCFB(f, fib(4096, 0)))
	f.Add(wordCFB(f, fib(512, 0), cfbNode{name: "1Table", typ: 2, data: make([]byte, 300)}))
	f.Add(wordCFB(f, fib(4096, 0), cfbNode{name: "Macros", typ: 1}))
	f.Add(wordCFB(f, fib(4096, 0), cfbNode{name: "ObjectPool", typ: 1, child: 3}, cfbNode{name: "_1", typ: 1}))
	for _, s := range attackDOCSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > int(fuzzLimits.MaxBytes) {
			return
		}
		var (
			doc *Document
			err error
		)
		bounded(t, func() { doc, err = inspectDOC(data) })
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v does not wrap ErrUnsupported", err)
			}
			return
		}
		if doc.Kind != KindDOC || !bytes.Equal(doc.Data, data) {
			t.Fatal("accepted DOC altered")
		}
	})
}

// FuzzVaultOpen: no panic, errors wrap ErrOpen, and nothing opens but a blob
// that was sealed (forging needs the key), only for its owner and request.
func FuzzVaultOpen(f *testing.F) {
	v := testVault(f, 9)
	valid, err := v.Seal(sampleDoc(), "alice", "req-1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, "alice", "req-1")
	f.Add(valid, "alice", "req-2")
	f.Add(valid[:len(valid)-1], "alice", "req-1")
	f.Add([]byte{vaultVersion}, "", "")
	f.Fuzz(func(t *testing.T, blob []byte, owner, req string) {
		doc, err := v.Open(blob, owner, req)
		if err != nil {
			if !errors.Is(err, ErrOpen) || doc != nil {
				t.Fatalf("err = %v, doc = %v", err, doc)
			}
			return
		}
		// Only seeds sealed for alice's req-1 exist (each fuzz process seals
		// its own, so the bytes of valid may differ from the input's).
		if owner != "alice" || req != "req-1" || len(blob) != len(valid) {
			t.Fatalf("opened a blob that was never sealed (%q, %q)", owner, req)
		}
		if want := sampleDoc(); doc.Kind != want.Kind || !bytes.Equal(doc.Data, want.Data) ||
			doc.SHA256 != want.SHA256 || doc.Width != want.Width || doc.Height != want.Height {
			t.Fatal("opened to other content")
		}
		for i := range blob { // and any change to it is caught
			bad := append([]byte{}, blob...)
			bad[i] ^= 0x10
			if _, err := v.Open(bad, owner, req); err == nil {
				t.Fatalf("changed byte %d still opens", i)
			}
		}
	})
}

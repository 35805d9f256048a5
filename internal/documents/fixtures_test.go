package documents

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"sync"
	"testing"
	"unicode/utf16"
)

// Markers planted in fixtures that must not survive Inspect.
const (
	secretDescription = "SECRET-DEVICE-SERIAL-4711"
	secretComment     = "SECRET-JPEG-COMMENT"
	secretText        = "SECRET-PNG-TEXT-CHUNK"
	secretTrailer     = "SECRET-POLYGLOT-PAYLOAD"
	secretXMP         = "SECRET-XMP-GPS"
)

// twoColour is a w×h image, left half a, right half b.
func twoColour(w, h int, a, b color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := a
			if x >= w/2 {
				c = b
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

var (
	red  = color.RGBA{255, 0, 0, 255}
	blue = color.RGBA{0, 0, 255, 255}
)

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jpegSegment is one marker segment.
func jpegSegment(marker byte, payload []byte) []byte {
	seg := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	return append(seg, payload...)
}

// insertAfterSOI puts segments right after the SOI marker.
func insertAfterSOI(j []byte, segs ...[]byte) []byte {
	out := append([]byte{}, j[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, j[2:]...)
}

// exifAPP1 builds an APP1 Exif payload (little-endian TIFF) with IFD0 holding
// ImageDescription, Orientation and a GPS IFD pointer; the GPS IFD holds
// latitude N 48°51'30", longitude E 2°17'40".
func exifAPP1(orientation int) []byte {
	le := binary.LittleEndian
	var t []byte
	t = append(t, 'I', 'I', 42, 0)
	t = le.AppendUint32(t, 8)
	// IFD0 at 8: 3 entries.
	const ifd0Entries = 3
	ifd0Size := 2 + 12*ifd0Entries + 4
	descOff := 8 + ifd0Size
	desc := append([]byte(secretDescription), 0)
	gpsOff := descOff + len(desc)
	if gpsOff%2 == 1 {
		desc = append(desc, 0)
		gpsOff++
	}
	entry := func(tag, typ uint16, count, value uint32) {
		t = le.AppendUint16(t, tag)
		t = le.AppendUint16(t, typ)
		t = le.AppendUint32(t, count)
		t = le.AppendUint32(t, value)
	}
	t = le.AppendUint16(t, ifd0Entries)
	entry(0x010E, 2, uint32(len(desc)), uint32(descOff)) // ImageDescription
	entry(0x0112, 3, 1, uint32(orientation))             // Orientation (SHORT, left-justified)
	entry(0x8825, 4, 1, uint32(gpsOff))                  // GPS IFD
	t = le.AppendUint32(t, 0)
	t = append(t, desc...)
	// GPS IFD: 4 entries, then the rationals.
	const gpsEntries = 4
	ratOff := gpsOff + 2 + 12*gpsEntries + 4
	t = le.AppendUint16(t, gpsEntries)
	entry(0x0001, 2, 2, uint32('N'))       // GPSLatitudeRef
	entry(0x0002, 5, 3, uint32(ratOff))    // GPSLatitude
	entry(0x0003, 2, 2, uint32('E'))       // GPSLongitudeRef
	entry(0x0004, 5, 3, uint32(ratOff+24)) // GPSLongitude
	t = le.AppendUint32(t, 0)
	for _, v := range []uint32{48, 1, 51, 1, 30, 1, 2, 1, 17, 1, 40, 1} {
		t = le.AppendUint32(t, v)
	}
	return append([]byte("Exif\x00\x00"), t...)
}

// gpsRationals is the byte pattern of the GPS latitude in the fixture.
func gpsRationals() []byte {
	var b []byte
	for _, v := range []uint32{48, 1, 51, 1, 30, 1} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// jpegWithMetadata is a JPEG with EXIF (GPS), an ICC APP2 and a comment.
func jpegWithMetadata(t testing.TB, img image.Image, orientation int) []byte {
	return insertAfterSOI(encodeJPEG(t, img),
		jpegSegment(0xE1, exifAPP1(orientation)),
		jpegSegment(0xE2, append([]byte("ICC_PROFILE\x00\x01\x01"), bytes.Repeat([]byte{0x42}, 64)...)),
		jpegSegment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>"+secretXMP+"</x:xmpmeta>")),
		jpegSegment(0xFE, []byte(secretComment)),
	)
}

// pngChunk builds one chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, typ...)
	c = append(c, data...)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	return binary.BigEndian.AppendUint32(c, crc.Sum32())
}

// insertAfterIHDR puts chunks right after IHDR.
func insertAfterIHDR(p []byte, chunks ...[]byte) []byte {
	const ihdrEnd = 8 + 4 + 4 + 13 + 4
	out := append([]byte{}, p[:ihdrEnd]...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, p[ihdrEnd:]...)
}

func pngWithText(t testing.TB) []byte {
	return insertAfterIHDR(encodePNG(t, twoColour(32, 16, red, blue)),
		pngChunk("tEXt", []byte("Comment\x00"+secretText)),
		pngChunk("tIME", []byte{0x07, 0xE8, 1, 2, 3, 4, 5}),
	)
}

// hugePNGHeader declares w×h RGBA pixels but holds almost no data.
func hugePNGHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 1024))
	zw.Close()
	out := append([]byte{}, sigPNG...)
	out = append(out, pngChunk("IHDR", ihdr)...)
	out = append(out, pngChunk("IDAT", z.Bytes())...)
	return append(out, pngChunk("IEND", nil)...)
}

// hugeJPEGHeader declares w×h pixels in a baseline SOF0.
func hugeJPEGHeader(w, h uint16) []byte {
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 1, 1, 0x11, 0}
	out := []byte{0xFF, 0xD8}
	out = append(out, jpegSegment(0xC0, sof)...)
	out = append(out, jpegSegment(0xDA, []byte{1, 1, 0, 0, 63, 0})...)
	return append(out, 0xFF, 0xD9)
}

// manyScansJPEG is a JPEG header followed by n empty scans.
func manyScansJPEG(n int) []byte {
	out := hugeJPEGHeader(8, 8)
	out = out[:len(out)-2]
	for i := 0; i < n; i++ {
		out = append(out, jpegSegment(0xDA, []byte{1, 1, 0, 0, 63, 0})...)
		out = append(out, 0x00)
	}
	return append(out, 0xFF, 0xD9)
}

// buildPDF makes a small PDF with a correct xref from object bodies
// (without "n 0 obj"/"endobj"); trailerExtra goes into the trailer.
func buildPDF(objects []string, trailerExtra string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	offs := make([]int, len(objects))
	for i, o := range objects {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objects)+1)
	for _, off := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n", len(objects)+1, trailerExtra, xref)
	return b.Bytes()
}

var pdfBase = []string{
	"<< /Type /Catalog /Pages 2 0 R >>",
	"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
	"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
	"<< /Length 35 >>\nstream\nBT /F1 12 Tf 20 100 Td (ID) Tj ET\nendstream",
}

func minimalPDF() []byte { return buildPDF(pdfBase, "") }

// pdfWith replaces the catalog.
func pdfWith(catalog string, extra ...string) []byte {
	objs := append([]string{catalog}, pdfBase[1:]...)
	return buildPDF(append(objs, extra...), "")
}

// pdfObjStm hides an object in a compressed object stream.
func pdfObjStm(hidden string) []byte {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	body := "6 0 " + hidden
	zw.Write([]byte(body))
	zw.Close()
	stm := fmt.Sprintf("<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream", z.Len(), z.Bytes())
	return buildPDF(append(append([]string{}, pdfBase...), stm), "")
}

// zipFile is one entry for buildZip.
type zipFile struct {
	name   string
	body   []byte
	method uint16
}

func buildZip(t testing.TB, files ...zipFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range files {
		fw, err := w.CreateHeader(&zip.FileHeader{Name: f.name, Method: f.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const (
	ctDOCX = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`
	ctDOCM = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/></Types>`
	ctXLSX = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>`
	relsRoot = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>`
	relsXLSX = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`
	wordBody = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Passport scan</w:t></w:r></w:p></w:body></w:document>`
)

func docRels(rels string) string {
	return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` + rels + `</Relationships>`
}

// docxFiles are the parts of a minimal DOCX, plus extra ones.
func docxFiles(extra ...zipFile) []zipFile {
	return append([]zipFile{
		{"[Content_Types].xml", []byte(ctDOCX), zip.Deflate},
		{"_rels/.rels", []byte(relsRoot), zip.Deflate},
		{"word/document.xml", []byte(wordBody), zip.Deflate},
	}, extra...)
}

func minimalDOCX(t testing.TB) []byte { return buildZip(t, docxFiles()...) }

var (
	bombOnce sync.Once
	bombData []byte // deflate of 200 MB of zeros
)

// bombDeflate is 200 MB of zeros, deflated (computed once).
func bombDeflate() []byte {
	bombOnce.Do(func() {
		var buf bytes.Buffer
		fw, _ := flate.NewWriter(&buf, flate.BestSpeed)
		zero := make([]byte, 1<<20)
		for i := 0; i < 200; i++ {
			fw.Write(zero)
		}
		fw.Close()
		bombData = buf.Bytes()
	})
	return bombData
}

// rawZip writes entries with given raw deflate data and declared sizes.
func rawZip(t testing.TB, files []zipFile, raws map[string]struct {
	data []byte
	crc  uint32
	size uint64
}) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range files {
		fw, err := w.CreateHeader(&zip.FileHeader{Name: f.name, Method: f.method})
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(f.body)
	}
	for name, r := range raws {
		fw, err := w.CreateRaw(&zip.FileHeader{
			Name: name, Method: zip.Deflate, CRC32: r.crc,
			CompressedSize64: uint64(len(r.data)), UncompressedSize64: r.size,
		})
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(r.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipBomb: one entry of 200 MB of zeros, declared truthfully.
func zipBomb(t testing.TB) []byte {
	d := bombDeflate()
	return rawZip(t, docxFiles(), map[string]struct {
		data []byte
		crc  uint32
		size uint64
	}{"word/media/zeros.bin": {d, crc32.ChecksumIEEE(nil), 200 << 20}})
}

// lyingZip: the same data, declared as 1000 bytes.
func lyingZip(t testing.TB) []byte {
	d := bombDeflate()
	return rawZip(t, docxFiles(), map[string]struct {
		data []byte
		crc  uint32
		size uint64
	}{"word/media/zeros.bin": {d, 0, 1000}})
}

// overlappingZip points the second entry's central record at the first
// entry's local header.
func overlappingZip(t testing.TB) []byte {
	z := buildZip(t, docxFiles(zipFile{"word/b.xml", []byte("<b/>"), zip.Store})...)
	cd := bytes.LastIndex(z, []byte("PK\x01\x02"))
	binary.LittleEndian.PutUint32(z[cd+42:], 0) // local header offset
	return z
}

// manyEntriesZip has n tiny entries.
func manyEntriesZip(t testing.TB, n int) []byte {
	files := docxFiles()
	for i := 0; i < n; i++ {
		files = append(files, zipFile{fmt.Sprintf("word/x%d.xml", i), nil, zip.Store})
	}
	return buildZip(t, files...)
}

// CFB (OLE2) fixtures, version 3 with 512-byte sectors.

type cfbNode struct {
	name               string
	typ                byte
	left, right, child uint32
	data               []byte
	start              uint32
	size               uint64
}

const (
	noSid  = 0xFFFFFFFF
	endSid = 0xFFFFFFFE
	fatSid = 0xFFFFFFFD
)

// fib is a FibBase (padded to size) with the given flags.
func fib(size int, flags uint16) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint16(b[0:], 0xA5EC)
	binary.LittleEndian.PutUint16(b[2:], 0x00C1)
	binary.LittleEndian.PutUint16(b[10:], flags)
	return b
}

// buildCFB writes a compound file: sector 0 is the only FAT sector, then
// directory, streams, mini stream and mini FAT. nodes[0] is the root.
func buildCFB(t testing.TB, nodes []cfbNode) []byte {
	t.Helper()
	const ss = 512
	var sectors [][]byte
	fat := []uint32{fatSid}
	sectors = append(sectors, nil) // the FAT, filled last
	alloc := func(data []byte) uint32 {
		n := (len(data) + ss - 1) / ss
		if n == 0 {
			n = 1
		}
		start := uint32(len(sectors))
		for i := 0; i < n; i++ {
			s := make([]byte, ss)
			copy(s, data[min(i*ss, len(data)):min((i+1)*ss, len(data))])
			sectors = append(sectors, s)
			next := uint32(len(sectors))
			if i == n-1 {
				next = endSid
			}
			fat = append(fat, next)
		}
		return start
	}
	dirStart := uint32(len(sectors))
	nd := (len(nodes) + 3) / 4
	for i := 0; i < nd; i++ { // reserve
		sectors = append(sectors, make([]byte, ss))
		next := uint32(len(sectors))
		if i == nd-1 {
			next = endSid
		}
		fat = append(fat, next)
	}
	var mini []byte
	var miniFAT []uint32
	for i := 1; i < len(nodes); i++ {
		n := &nodes[i]
		if n.typ != 2 {
			continue
		}
		n.size = uint64(len(n.data))
		if len(n.data) >= 4096 {
			n.start = alloc(n.data)
			continue
		}
		n.start = uint32(len(mini) / 64)
		k := (len(n.data) + 63) / 64
		for j := 0; j < k; j++ {
			next := uint32(len(mini)/64 + j + 1)
			if j == k-1 {
				next = endSid
			}
			miniFAT = append(miniFAT, next)
		}
		pad := make([]byte, k*64)
		copy(pad, n.data)
		mini = append(mini, pad...)
	}
	firstMiniFAT, numMiniFAT := uint32(endSid), uint32(0)
	nodes[0].start, nodes[0].size = endSid, 0
	if len(mini) > 0 {
		nodes[0].start, nodes[0].size = alloc(mini), uint64(len(mini))
		var mf []byte
		for _, v := range miniFAT {
			mf = binary.LittleEndian.AppendUint32(mf, v)
		}
		for len(mf) < ss {
			mf = binary.LittleEndian.AppendUint32(mf, noSid)
		}
		firstMiniFAT, numMiniFAT = alloc(mf), 1
	}
	if len(fat) > ss/4 {
		t.Fatal("fixture too big for one FAT sector")
	}
	// Directory.
	for i := 0; i < nd*4; i++ {
		e := sectors[int(dirStart)+i/4][(i%4)*128 : (i%4)*128+128]
		le := binary.LittleEndian
		if i >= len(nodes) {
			le.PutUint32(e[0x44:], noSid)
			le.PutUint32(e[0x48:], noSid)
			le.PutUint32(e[0x4C:], noSid)
			continue
		}
		n := nodes[i]
		u := utf16.Encode([]rune(n.name))
		for k, c := range u {
			le.PutUint16(e[2*k:], c)
		}
		le.PutUint16(e[0x40:], uint16(2*len(u)+2))
		e[0x42] = n.typ
		e[0x43] = 1 // black
		le.PutUint32(e[0x44:], n.left)
		le.PutUint32(e[0x48:], n.right)
		le.PutUint32(e[0x4C:], n.child)
		le.PutUint32(e[0x74:], n.start)
		le.PutUint64(e[0x78:], n.size)
	}
	// FAT.
	f := make([]byte, ss)
	for i := range ss / 4 {
		v := uint32(noSid)
		if i < len(fat) {
			v = fat[i]
		}
		binary.LittleEndian.PutUint32(f[4*i:], v)
	}
	sectors[0] = f
	// Header.
	h := make([]byte, ss)
	copy(h, sigCFB)
	le := binary.LittleEndian
	le.PutUint16(h[0x18:], 0x3E)
	le.PutUint16(h[0x1A:], 3)
	le.PutUint16(h[0x1C:], 0xFFFE)
	le.PutUint16(h[0x1E:], 9)
	le.PutUint16(h[0x20:], 6)
	le.PutUint32(h[0x2C:], 1)
	le.PutUint32(h[0x30:], dirStart)
	le.PutUint32(h[0x38:], 4096)
	le.PutUint32(h[0x3C:], firstMiniFAT)
	le.PutUint32(h[0x40:], numMiniFAT)
	le.PutUint32(h[0x44:], endSid)
	le.PutUint32(h[0x48:], 0)
	for k := 0; k < 109; k++ {
		le.PutUint32(h[0x4C+4*k:], noSid)
	}
	le.PutUint32(h[0x4C:], 0)
	out := h
	for _, s := range sectors {
		out = append(out, s...)
	}
	return out
}

// wordCFB is a Word document: Root → WordDocument (→ extra siblings).
// extra nodes are chained as right siblings of WordDocument.
func wordCFB(t testing.TB, word []byte, extra ...cfbNode) []byte {
	nodes := []cfbNode{
		{name: "Root Entry", typ: 5, left: noSid, right: noSid, child: 1},
		{name: "WordDocument", typ: 2, left: noSid, right: noSid, child: noSid, data: word},
	}
	for i, e := range extra {
		if i == 0 {
			nodes[1].right = uint32(len(nodes))
		} else {
			nodes[len(nodes)-1].right = uint32(len(nodes))
		}
		if e.left == 0 {
			e.left = noSid
		}
		if e.right == 0 {
			e.right = noSid
		}
		if e.child == 0 {
			e.child = noSid
		}
		nodes = append(nodes, e)
	}
	return buildCFB(t, nodes)
}

// Other signatures.
var (
	htmlDoc  = []byte("<!DOCTYPE html><html><head><title>x</title></head><body><script>alert(document.cookie)</script></body></html>")
	svgDoc   = []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>`)
	gifDoc   = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
	webpDoc  = []byte("RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00" + strings.Repeat("\x00", 24))
	heicDoc  = []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + strings.Repeat("\x00", 32))
	elfDoc   = append([]byte("\x7fELF\x02\x01\x01\x00"), make([]byte, 56)...)
	peDoc    = append([]byte("MZ\x90\x00"), make([]byte, 128)...)
	plainTxt = []byte("just some text, not a document\n")
)

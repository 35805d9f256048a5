package documents

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/ascii85"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pdf15 describes a PDF 1.5 file as current writers produce it: top-level
// objects, optionally an object stream, and a cross-reference stream that
// finds the objects in the object stream.
type pdf15 struct {
	top       map[int]string      // object number → what follows "n 0 obj"
	stm       int                 // object number of the object stream, 0 for none
	stmDict   string              // its dictionary entries but /Length; {N} and {First} are filled in
	stmObjs   map[int]string      // the objects in it
	stmEnc    func([]byte) []byte // encodes its data; nil for zlib
	stmLength string              // its /Length value, if not the encoded length
	predictor bool                // compress the cross-reference stream with a PNG predictor
	trailer   string              // more entries for the cross-reference stream dictionary
}

func (p pdf15) build() []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	size := p.stm + 1
	for n := range p.top {
		size = max(size, n+1)
	}
	for n := range p.stmObjs {
		size = max(size, n+1)
	}
	xrefNum := size
	size++
	offs := map[int]int{}
	for _, n := range slices.Sorted(maps.Keys(p.top)) {
		offs[n] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", n, p.top[n])
	}
	index := map[int]int{}
	if p.stm != 0 {
		var hdr, objs bytes.Buffer
		for i, n := range slices.Sorted(maps.Keys(p.stmObjs)) {
			index[n] = i
			fmt.Fprintf(&hdr, "%d %d ", n, objs.Len())
			objs.WriteString(p.stmObjs[n] + "\n")
		}
		enc := p.stmEnc
		if enc == nil {
			enc = zlibBytes
		}
		data := enc(append(hdr.Bytes(), objs.Bytes()...))
		length := p.stmLength
		if length == "" {
			length = strconv.Itoa(len(data))
		}
		dict := strings.NewReplacer("{N}", strconv.Itoa(len(p.stmObjs)), "{First}", strconv.Itoa(hdr.Len())).Replace(p.stmDict)
		offs[p.stm] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n<< %s /Length %s >>\nstream\n", p.stm, dict, length)
		b.Write(data)
		b.WriteString("\nendstream\nendobj\n")
	}
	xrefOff := b.Len()
	offs[xrefNum] = xrefOff
	var rows []byte
	for n := range size {
		row := make([]byte, 7)
		i, inStm := index[n]
		switch {
		case inStm:
			row[0] = 2
			binary.BigEndian.PutUint32(row[1:], uint32(p.stm))
			binary.BigEndian.PutUint16(row[5:], uint16(i))
		case offs[n] != 0:
			row[0] = 1
			binary.BigEndian.PutUint32(row[1:], uint32(offs[n]))
		case n == 0:
			row[5], row[6] = 0xFF, 0xFF
		}
		rows = append(rows, row...)
	}
	filter := ""
	if p.predictor {
		rows = zlibBytes(pngPredict(rows, 7, 1, 2))
		filter = "/Filter /FlateDecode /DecodeParms << /Columns 7 /Predictor 12 >> "
	}
	fmt.Fprintf(&b, "%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R %s%s/Length %d >>\nstream\n",
		xrefNum, size, p.trailer, filter, len(rows))
	b.Write(rows)
	fmt.Fprintf(&b, "\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n", xrefOff)
	return b.Bytes()
}

// streamObj is a stream object body with its /Length filled in.
func streamObj(dict string, data []byte) string {
	return fmt.Sprintf("<< %s /Length %d >>\nstream\n%s\nendstream", dict, len(data), data)
}

func zlibBytes(b []byte) []byte {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

func hexBytes(b []byte) []byte { return []byte(hex.EncodeToString(b) + ">") }

func a85Bytes(b []byte) []byte {
	out := make([]byte, ascii85.MaxEncodedLen(len(b)))
	return append(out[:ascii85.Encode(out, b)], "~>"...)
}

// runLengthBytes encodes runs of three or more equal bytes as repeats and the
// rest as literals, ending with the end-of-data byte.
func runLengthBytes(b []byte) []byte {
	var out, lit []byte
	flush := func() {
		for len(lit) > 0 {
			n := min(len(lit), 128)
			out = append(append(out, byte(n-1)), lit[:n]...)
			lit = lit[n:]
		}
	}
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && j-i < 128 && b[j] == b[i] {
			j++
		}
		if j-i >= 3 {
			flush()
			out = append(out, byte(257-(j-i)), b[i])
		} else {
			lit = append(lit, b[i:j]...)
		}
		i = j
	}
	flush()
	return append(out, 128)
}

// refPaeth is the Paeth predictor as the PNG specification writes it.
func refPaeth(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	pa, pb, pc := p-int(a), p-int(b), p-int(c)
	if pa < 0 {
		pa = -pa
	}
	if pb < 0 {
		pb = -pb
	}
	if pc < 0 {
		pc = -pc
	}
	if pa <= pb && pa <= pc {
		return a
	}
	if pb <= pc {
		return b
	}
	return c
}

// pngPredict applies PNG predictor tag (0-4; -1 takes each in turn, row by
// row) to data in rows of row bytes with pixel bytes per pixel.
func pngPredict(data []byte, row, pixel, tag int) []byte {
	var out []byte
	prev := make([]byte, row)
	for r := 0; r*row < len(data); r++ {
		cur := data[r*row : min((r+1)*row, len(data))]
		t := tag
		if t < 0 {
			t = r % 5
		}
		out = append(out, byte(t))
		for i, x := range cur {
			var left, upLeft byte
			if i >= pixel {
				left, upLeft = cur[i-pixel], prev[i-pixel]
			}
			switch t {
			case 1:
				x -= left
			case 2:
				x -= prev[i]
			case 3:
				x -= byte((int(left) + int(prev[i])) / 2)
			case 4:
				x -= refPaeth(left, prev[i], upLeft)
			}
			out = append(out, x)
		}
		copy(prev, cur)
	}
	return out
}

// tiffPredict applies TIFF predictor 2 to 8-bit components.
func tiffPredict(data []byte, row, colors int) []byte {
	out := slices.Clone(data)
	for start := 0; start < len(data); start += row {
		for i := start + colors; i < min(start+row, len(data)); i++ {
			out[i] = data[i] - data[i-colors]
		}
	}
	return out
}

// Pieces of the PDFs below.
const (
	pagesObj   = "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
	pageObj    = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>"
	contentObj = "<< /Length 35 >>\nstream\nBT /F1 12 Tf 20 100 Td (ID) Tj ET\nendstream"
	// evilCatalog runs JavaScript when the PDF is opened.
	evilCatalog = "<< /Type /Catalog /Pages 2 0 R /OpenAction << /S /JavaScript /JS (app.alert\\('reviewer'\\)) >> >>"
	cleanCat    = "<< /Type /Catalog /Pages 2 0 R >>"
)

// hiddenCatalogPDF puts catalog in object stream 5 with dictionary entries
// dict and data encoded by enc (nil: zlib); more holds more top-level objects.
func hiddenCatalogPDF(dict string, enc func([]byte) []byte, catalog string, more map[int]string) []byte {
	top := map[int]string{2: pagesObj, 3: pageObj, 4: contentObj}
	maps.Copy(top, more)
	return pdf15{top: top, stm: 5, stmDict: dict, stmObjs: map[int]string{1: catalog}, stmEnc: enc}.build()
}

// withStream is the minimal PDF with one more object, a stream.
func withStream(dict string, data []byte) []byte {
	return pdfWith(cleanCat, streamObj(dict, data))
}

// noise is n deterministic pseudo-random bytes.
func noise(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// scannerPDF is what a document scanner or office suite writes: the catalog,
// page tree, page and font in a compressed object stream, a Flate content
// stream with an indirect /Length, a JPEG, a Flate image with a PNG
// predictor, a CCITT mask, an ICC profile, uncompressed XMP metadata, an
// Info dictionary and a predicted, compressed cross-reference stream.
func scannerPDF(t testing.TB) []byte {
	content := zlibBytes([]byte("q 595 0 0 842 0 0 cm /Im0 Do Q q 16 0 0 8 10 10 cm /Im1 Do Q\n" +
		"q 8 0 0 8 40 10 cm /Im2 Do Q BT /F1 12 Tf 20 800 Td (Identity card, page 1) Tj ET\n"))
	rgb := twoColour(16, 8, red, blue).Pix
	var pix []byte
	for i := 0; i < len(rgb); i += 4 {
		pix = append(pix, rgb[i:i+3]...)
	}
	xmp := `<?xpacket begin="` + "\xef\xbb\xbf" + `" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:pdf="http://ns.adobe.com/pdf/1.3/" pdf:Producer="ScanSnap Manager #S1500"/>
</rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>`
	return pdf15{
		top: map[int]string{
			4:  fmt.Sprintf("<< /Length 11 0 R /Filter /FlateDecode >>\nstream\n%s\nendstream", content),
			11: strconv.Itoa(len(content)),
			5: streamObj("/Type /XObject /Subtype /Image /Width 64 /Height 32 /ColorSpace 7 0 R /BitsPerComponent 8 /Filter /DCTDecode",
				encodeJPEG(t, twoColour(64, 32, red, blue))),
			6: streamObj("/Type /XObject /Subtype /Image /Width 16 /Height 8 /ColorSpace /DeviceRGB /BitsPerComponent 8 "+
				"/Filter /FlateDecode /DecodeParms << /Predictor 15 /Colors 3 /BitsPerComponent 8 /Columns 16 >>",
				zlibBytes(pngPredict(pix, 48, 3, -1))),
			12: streamObj("/Type /XObject /Subtype /Image /Width 8 /Height 8 /ImageMask true "+
				"/Filter /CCITTFaxDecode /DecodeParms << /K -1 /Columns 8 /BlackIs1 true >>", noise(40, 3)),
			7:  "[/ICCBased 8 0 R]",
			8:  streamObj("/N 3 /Alternate /DeviceRGB /Filter /FlateDecode", zlibBytes(noise(3144, 1))),
			9:  streamObj("/Type /Metadata /Subtype /XML", []byte(xmp)),
			10: "<< /Producer (ScanSnap Manager \\#S1500) /CreationDate (D:20240101120000+01'00') /Title (Scan 2024-01-01) >>",
		},
		stm:     13,
		stmDict: "/Type /ObjStm /N {N} /First {First} /Filter /FlateDecode",
		stmObjs: map[int]string{
			1: "<< /Type /Catalog /Pages 2 0 R /Metadata 9 0 R /Lang (de-DE) >>",
			2: pagesObj,
			3: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /Im0 5 0 R /Im1 6 0 R /Im2 12 0 R >> " +
				"/Font << /F1 14 0 R >> /ProcSet [/PDF /Text /ImageC /ImageB] >> /Contents 4 0 R >>",
			14: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
		},
		predictor: true,
		trailer:   "/Info 10 0 R /ID [<0123456789abcdef0123456789abcdef> <0123456789abcdef0123456789abcdef>] ",
	}.build()
}

// Active content hidden in streams, or streams the scanner cannot read for
// certain, are refused, naming the problem.
func TestPDFStreamsRefused(t *testing.T) {
	objStm := "/Type /ObjStm /N {N} /First {First} "
	objFlate := objStm + "/Filter /FlateDecode"
	cut := func(b []byte) []byte { z := zlibBytes(b); return z[:len(z)-12] }
	rawDeflate := func(b []byte) []byte {
		var z bytes.Buffer
		fw, _ := flate.NewWriter(&z, flate.BestCompression)
		fw.Write(b)
		fw.Close()
		return z.Bytes()
	}
	withDict := func(b []byte) []byte {
		var z bytes.Buffer
		zw, _ := zlib.NewWriterLevelDict(&z, zlib.DefaultCompression, []byte("OpenAction JavaScript"))
		zw.Write(b)
		zw.Close()
		return z.Bytes()
	}
	stored := func(b []byte) []byte { // a stored deflate block, its data readable in the file
		var z bytes.Buffer
		zw, _ := zlib.NewWriterLevel(&z, zlib.NoCompression)
		zw.Write(b)
		zw.Close()
		return z.Bytes()
	}
	sub8 := func(b []byte) []byte { return zlibBytes(pngPredict(b, 8, 1, 1)) }
	if bytes.Contains(stored([]byte(evilCatalog)), []byte("OpenAction")) == false ||
		bytes.Contains(pngPredict([]byte(evilCatalog), 8, 1, 1), []byte("OpenAction")) {
		t.Fatal("the encoders do not do what the cases below assume")
	}
	catalogData := []byte("1 0 " + evilCatalog)
	tests := []struct {
		name   string
		in     []byte
		reason string
	}{
		// An object stream need not say /Type /ObjStm: readers find it
		// through the cross-reference stream.
		{"untyped object stream", hiddenCatalogPDF("/N {N} /First {First} /Filter /FlateDecode", nil, evilCatalog, nil), "/OpenAction"},
		{"object stream typed by an indirect reference", hiddenCatalogPDF("/Type 7 0 R /N {N} /First {First} /Filter /FlateDecode", nil, evilCatalog, map[int]string{7: "/ObjStm"}), "/OpenAction"},
		{"object stream typed as an image", hiddenCatalogPDF("/Type /XObject /Subtype /Image /N {N} /First {First} /Filter /FlateDecode", nil, evilCatalog, nil), "/OpenAction"},
		{"object stream with /N only", hiddenCatalogPDF("/N {N} /Filter /FlateDecode", nil, evilCatalog, nil), "/OpenAction"},
		{"object stream with /First only", hiddenCatalogPDF("/First {First} /Filter /FlateDecode", nil, evilCatalog, nil), "/OpenAction"},
		{"object stream with obj in a string of its dictionary", hiddenCatalogPDF(objStm+"/X (obj) /Filter /FlateDecode", nil, evilCatalog, nil), "/OpenAction"},
		{"object stream with obj in a comment in its dictionary", hiddenCatalogPDF(objStm+"% obj\n/Filter /FlateDecode", nil, evilCatalog, nil), "/OpenAction"},
		{"object stream with a stream keyword in a string of its dictionary", hiddenCatalogPDF(objStm+"/X (>> stream\n) /Filter /FlateDecode", nil, evilCatalog, nil), "/OpenAction"},
		{"escaped filter name", hiddenCatalogPDF(objStm+"/Filter /Flate#44ecode", nil, evilCatalog, nil), "/OpenAction"},
		{"abbreviated filter name", hiddenCatalogPDF(objStm+"/Filter /Fl", nil, evilCatalog, nil), "/OpenAction"},

		// Filters and chains are decoded.
		{"ascii hex", hiddenCatalogPDF(objStm+"/Filter /ASCIIHexDecode", hexBytes, evilCatalog, nil), "/OpenAction"},
		{"ascii85", hiddenCatalogPDF(objStm+"/Filter /A85", a85Bytes, evilCatalog, nil), "/OpenAction"},
		{"run length", hiddenCatalogPDF(objStm+"/Filter /RunLengthDecode", runLengthBytes, evilCatalog, nil), "/OpenAction"},
		{"ascii hex over flate", hiddenCatalogPDF(objStm+"/Filter [/ASCIIHexDecode /FlateDecode]", func(b []byte) []byte { return hexBytes(zlibBytes(b)) }, evilCatalog, nil), "/OpenAction"},
		{"ascii85 over flate", hiddenCatalogPDF(objStm+"/Filter [/A85 /Fl]", func(b []byte) []byte { return a85Bytes(zlibBytes(b)) }, evilCatalog, nil), "/OpenAction"},
		{"flate twice", hiddenCatalogPDF(objStm+"/Filter [/FlateDecode /FlateDecode]", func(b []byte) []byte { return zlibBytes(zlibBytes(b)) }, evilCatalog, nil), "/OpenAction"},
		{"run length over ascii85 over flate", hiddenCatalogPDF(objStm+"/Filter [/RL /A85 /Fl]", func(b []byte) []byte { return runLengthBytes(a85Bytes(zlibBytes(b))) }, evilCatalog, nil), "/OpenAction"},
		{"flate with a PNG predictor", hiddenCatalogPDF(objFlate+" /DecodeParms << /Predictor 12 /Columns 8 >>", sub8, evilCatalog, nil), "/OpenAction"},
		{"flate with a TIFF predictor", hiddenCatalogPDF(objFlate+" /DP << /Predictor 2 /Columns 16 >>", func(b []byte) []byte { return zlibBytes(tiffPredict(b, 16, 1)) }, evilCatalog, nil), "/OpenAction"},
		{"predictor in a filter chain", hiddenCatalogPDF(objStm+"/Filter [/AHx /Fl] /DecodeParms [null << /Predictor 12 /Columns 8 >>]", func(b []byte) []byte { return hexBytes(sub8(b)) }, evilCatalog, nil), "/OpenAction"},
		{"no filter", hiddenCatalogPDF(objStm, func(b []byte) []byte { return b }, "<< /Type /Catalog /Pages 2 0 R /AA << /WC 9 0 R >> >>", nil), "/AA"},

		// Names obfuscated with #xx escapes, in decoded data and raw.
		{"escaped names in an object stream", hiddenCatalogPDF(objFlate, nil, "<< /Type /Catalog /Pages 2 0 R /Open#41ction << /S /J#61va#53cript >> >>", nil), "/OpenAction"},
		{"escaped /AA in an object stream", hiddenCatalogPDF(objFlate, nil, "<< /Type /Catalog /Pages 2 0 R /A#41 << /WC 9 0 R >> >>", nil), "/AA"},
		{"javascript in a string in an object stream", hiddenCatalogPDF(objFlate, nil, "<< /Type /Catalog /Pages 2 0 R /Lang (/JS) >>", nil), "/JS"},
		{"escaped name in a flate content stream", withStream("/Filter /FlateDecode", zlibBytes([]byte("/OpenA#63tion 1 0 R"))), "/OpenAction"},
		{"escaped name in raw stream data", withStream("", []byte("q /J#61vaScript Q")), "/JavaScript"},
		{"embedded files in raw stream data", withStream("", []byte("/EmbeddedFiles 9 0 R")), "/EmbeddedFiles"},
		{"name in an image after flate", withStream("/Filter [/FlateDecode /DCTDecode]", zlibBytes([]byte("\xff\xd8 /Launch \xff\xd9"))), "/Launch"},

		// What the scanner cannot decode, or could decode otherwise than a
		// reader, is refused.
		{"indirect filter", hiddenCatalogPDF(objStm+"/Filter 7 0 R", nil, evilCatalog, map[int]string{7: "/FlateDecode"}), "cannot be inspected"},
		{"indirect filter in an array", hiddenCatalogPDF(objStm+"/Filter [7 0 R]", nil, evilCatalog, map[int]string{7: "/FlateDecode"}), "cannot be inspected"},
		{"indirect decode parameters", hiddenCatalogPDF(objFlate+" /DecodeParms 7 0 R", nil, evilCatalog, map[int]string{7: "<< /Predictor 1 >>"}), "cannot be inspected"},
		{"indirect predictor", hiddenCatalogPDF(objFlate+" /DecodeParms << /Predictor 7 0 R >>", nil, evilCatalog, map[int]string{7: "1"}), "cannot be inspected"},
		{"parameter array for one filter", hiddenCatalogPDF(objFlate+" /DecodeParms [<< /Predictor 12 >>]", nil, evilCatalog, nil), "cannot be inspected"},
		{"parameter dictionary for a filter array", hiddenCatalogPDF(objStm+"/Filter [/FlateDecode] /DecodeParms << /Predictor 12 >>", nil, evilCatalog, nil), "cannot be inspected"},
		{"lzw", withStream("/Filter /LZWDecode", []byte("\x80\x0b\x60\x50\x22\x0c\x0c\x85\x01")), "cannot be inspected (/LZWDecode)"},
		{"crypt filter", withStream("/Filter /Crypt", []byte("x")), "cannot be inspected (/Crypt)"},
		{"unknown filter", hiddenCatalogPDF(objStm+"/Filter /BrotliDecode", nil, evilCatalog, nil), "unknown filter /BrotliDecode"},
		{"image codec on an object stream", hiddenCatalogPDF(objStm+"/Filter /DCTDecode", nil, evilCatalog, nil), "cannot be inspected (/DCTDecode)"},
		{"image codec before another filter", withStream("/Filter [/DCTDecode /FlateDecode]", zlibBytes([]byte("x"))), "cannot be inspected (/DCTDecode before"},
		{"unsupported predictor", hiddenCatalogPDF(objFlate+" /DecodeParms << /Predictor 5 >>", nil, evilCatalog, nil), "predictor 5"},
		{"bad predictor parameters", hiddenCatalogPDF(objFlate+" /DecodeParms << /Predictor 12 /BitsPerComponent 3 >>", nil, evilCatalog, nil), "out of range"},
		{"bad PNG row tag", withStream("/Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 4 >>", zlibBytes([]byte("\x07abcd"))), "row tag 7"},
		{"filter as /F", hiddenCatalogPDF(objStm+"/F /FlateDecode", nil, evilCatalog, nil), "external data (/F)"},
		{"filter given twice", hiddenCatalogPDF(objStm+"/Filter /ASCIIHexDecode /Filter /FlateDecode", nil, evilCatalog, nil), "/Filter twice"},
		{"both /DP and /DecodeParms", hiddenCatalogPDF(objFlate+" /DP << /Predictor 1 >> /DecodeParms << /Predictor 1 >>", nil, evilCatalog, nil), "both /DP and /DecodeParms"},
		{"too many filters", hiddenCatalogPDF(objStm+"/Filter ["+strings.Repeat("/AHx ", 33)+"]", nil, evilCatalog, nil), "cannot be inspected"},
		{"stream inside an object stream", hiddenCatalogPDF(objFlate, nil, "<< /Filter /FlateDecode /Length 12 >>\nstream\n"+string(zlibBytes([]byte("1 0 obj")))+"\nendstream", nil), "stream inside an object stream"},
		{"uncompressed object stream with an indirect length", pdf15{top: map[int]string{2: pagesObj, 3: pageObj, 4: contentObj, 9: strconv.Itoa(len(catalogData) + 4)},
			stm: 5, stmDict: objStm, stmObjs: map[int]string{1: cleanCat}, stmEnc: func(b []byte) []byte { return b }, stmLength: "9 0 R"}.build(), "without a direct /Length"},

		// Data cut short, or not ending as its decoder requires.
		{"truncated flate", hiddenCatalogPDF(objFlate, cut, evilCatalog, nil), "does not inflate"},
		{"flate cut by a planted endstream", pdf15{top: map[int]string{2: pagesObj, 3: pageObj, 4: contentObj, 9: "999"},
			stm: 5, stmDict: objFlate, stmObjs: map[int]string{1: "<< /X (endstream) >>", 6: evilCatalog}, stmEnc: stored, stmLength: "9 0 R"}.build(), "does not inflate"},
		{"raw deflate", hiddenCatalogPDF(objFlate, rawDeflate, evilCatalog, nil), "zlib header"},
		{"zlib with a preset dictionary", hiddenCatalogPDF(objFlate, withDict, evilCatalog, nil), "zlib header"},
		{"ascii hex without its end marker", hiddenCatalogPDF(objStm+"/Filter /AHx", func(b []byte) []byte { return []byte(hex.EncodeToString(b)) }, cleanCat, nil), "end marker"},
		{"ascii hex with a stray character", withStream("/Filter /AHx", []byte("4a 5x >")), "other than a hex digit"},
		{"ascii85 without its end marker", hiddenCatalogPDF(objStm+"/Filter /A85", func(b []byte) []byte { return bytes.TrimSuffix(a85Bytes(b), []byte("~>")) }, cleanCat, nil), "end marker"},
		{"ascii85 out of range", withStream("/Filter /A85", []byte("uuuuu~>")), "out of range"},
		{"run length without its end marker", hiddenCatalogPDF(objStm+"/Filter /RL", func(b []byte) []byte { r := runLengthBytes(b); return r[:len(r)-1] }, cleanCat, nil), "RunLengthDecode"},
		{"length past a planted endstream", withStream("", []byte("q Q\nendstream\n/J#53 (x)")), "runs past its endstream"},

		// Objects hidden where a reader rebuilding the cross-reference table
		// would find them.
		{"object header in a string", pdfWith("<< /Type /Catalog /Pages 2 0 R /Title (9 0 obj) >>"), "hides an object"},
		{"object header in a comment", pdfWith(cleanCat + " % 9 0 obj << >>"), "hides an object"},
		{"object header in stream data", withStream("", []byte("9 0 obj << >> endobj")), "hides an object"},
		{"object header in a flate stream's data", withStream("/Filter /FlateDecode", stored([]byte("9 0 obj << >> endobj"))), "hides an object"},
		{"trailer in a string", pdfWith("<< /Type /Catalog /Pages 2 0 R /Title (trailer << /Root 9 0 R >>) >>"), "hides a trailer"},

		// Syntax the scanner would read otherwise than readers.
		{"stream inside an array", pdfWith(cleanCat, "[ << /Length 3 >>\nstream\nabc\nendstream ]"), "stream inside an array"},
		{"stream without a dictionary", pdfWith(cleanCat, "[1 2]\nstream\nabc\nendstream"), "without a dictionary"},
		{"stream keyword without an end of line", pdfWith(cleanCat, "<< /Length 3 >>\nstream abc\nendstream"), "no end of line"},
		{"dictionary key that is not a name", pdfWith(cleanCat, "<< 7 /Filter /FlateDecode >>"), "not a name"},
		{"dictionary key without a value", pdfWith(cleanCat, "<< /Filter >>"), "without a value"},
		{"unterminated string", pdfWith("<< /Type /Catalog /Pages 2 0 R /Title (abc >>"), "unterminated string"},
		{"unterminated dictionary", []byte("%PDF-1.4\n1 0 obj << /Type /Catalog\n%%EOF\n"), "unterminated"},
		{"unbalanced dictionary", pdfWith(cleanCat + " >>"), "unbalanced"},
		{"deep nesting", pdfWith(cleanCat, strings.Repeat("[", 100)+strings.Repeat("]", 100)), "nested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := inspect(tt.in)
			if err == nil {
				t.Fatalf("accepted as %s", doc.Kind)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}

// Legitimate PDFs, with compressed content, images, object and
// cross-reference streams, are accepted unchanged.
func TestPDFStreamsAccepted(t *testing.T) {
	objStm := "/Type /ObjStm /N {N} /First {First} "
	tests := []struct {
		name string
		in   []byte
	}{
		{"scanner output", scannerPDF(t)},
		{"typical object stream", hiddenCatalogPDF(objStm+"/Filter /FlateDecode", nil, cleanCat, nil)},
		{"object stream through every decoder", hiddenCatalogPDF(objStm+"/Filter [/RL /A85 /AHx /Fl] /DecodeParms [null null null << /Predictor 12 /Columns 8 >>]",
			func(b []byte) []byte { return runLengthBytes(a85Bytes(hexBytes(zlibBytes(pngPredict(b, 8, 1, -1))))) }, cleanCat, nil)},
		{"uncompressed object stream", hiddenCatalogPDF(objStm, func(b []byte) []byte { return b }, cleanCat, nil)},
		{"empty flate stream", withStream("/Filter /FlateDecode", nil)},
		{"flate stream with a zero /Length", pdfWith(cleanCat, "<< /Length 0 /Filter /FlateDecode >>\nstream\n"+string(zlibBytes([]byte("q Q")))+"\nendstream")},
		{"short /Length", pdfWith(cleanCat, "<< /Length 2 >>\nstream\nq Q\nendstream")},
		{"/Length a little long", pdfWith(cleanCat, "<< /Length 9 >>\nstream\nq Q\nendstream")},
		{"stream keyword before spaces and CRLF", pdfWith(cleanCat, "<< /Length 3 >>\nstream  \r\nq Q\r\nendstream")},
		{"ascii85 with a zero group and a short group", withStream("/Filter /A85", a85Bytes(append(make([]byte, 8), "tail!"...)))},
		{"TIFF predictor, 16 bits", withStream("/Filter /FlateDecode /DecodeParms << /Predictor 2 /BitsPerComponent 16 /Colors 3 /Columns 4 >>", zlibBytes(noise(96, 4)))},
		{"JBIG2 image with globals", withStream("/Type /XObject /Subtype /Image /Width 8 /Height 8 /Filter /JBIG2Decode /DecodeParms << /JBIG2Globals 9 0 R >>", noise(64, 5))},
		{"JPEG image after flate", withStream("/Type /XObject /Subtype /Image /Filter [/FlateDecode /DCTDecode] /DecodeParms [null << /ColorTransform 0 >>]",
			zlibBytes(encodeJPEG(t, twoColour(8, 8, red, blue))))},
		{"words like obj and trailer in text", pdfWith("<< /Type /Catalog /Pages 2 0 R /Title (objects, trailers, stream, 3 objects) >>")},
		{"names in content that are not banned", withStream("/Filter /FlateDecode", zlibBytes([]byte("/JSX /AAB /Java /OpenActions Do")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := inspect(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if doc.Kind != KindPDF || !bytes.Equal(doc.Data, tt.in) {
				t.Fatalf("accepted as %s, altered: %v", doc.Kind, !bytes.Equal(doc.Data, tt.in))
			}
		})
	}
}

// The decoders undo what the PNG and TIFF predictors do.
func TestPDFPredictors(t *testing.T) {
	data := noise(1000, 7)
	for _, pixel := range []int{1, 3} {
		for tag := -1; tag <= 4; tag++ {
			row := 10 * pixel
			enc := pngPredict(data, row, pixel, tag)
			got, err := pngUnpredict(slices.Clone(enc), row, pixel)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("PNG tag %d, %d bytes a pixel: %v, round trip equal %v", tag, pixel, err, bytes.Equal(got, data))
			}
		}
		got := tiffPredict(data, 10*pixel, pixel)
		tiffUnpredict(got, 10*pixel, pixel, false)
		if !bytes.Equal(got, data) {
			t.Errorf("TIFF, %d colours: round trip differs", pixel)
		}
	}
}

// The decoding budget bounds the total over all streams and all filters, and
// many small streams cost little.
func TestPDFDecodeBudget(t *testing.T) {
	lim := Limits{MaxZipUncompressed: 1 << 20}
	streams := func(n int, dict string, data []byte) []byte {
		objs := []string{cleanCat}
		objs = append(objs, pdfBase[1:]...)
		for range n {
			objs = append(objs, streamObj(dict, data))
		}
		return buildPDF(objs, "")
	}
	near := zlibBytes(make([]byte, 200<<10)) // 200 KiB inflated
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"streams within the budget", streams(4, "/Filter /FlateDecode", near), true},
		{"streams over the budget together", streams(6, "/Filter /FlateDecode", near), false},
		{"one stream over the budget", streams(1, "/Filter /FlateDecode", zlibBytes(make([]byte, 2<<20))), false},
		{"every filter's output counts", streams(2, "/Filter [/FlateDecode /FlateDecode]", zlibBytes(zlibBytes(noise(300<<10, 6)))), false},
		{"run length", streams(1, "/Filter /RL", append(bytes.Repeat([]byte{129, 0}, 9000), 128)), false},
		{"ascii85 zero groups", streams(1, "/Filter [/FlateDecode /A85]", zlibBytes(append(bytes.Repeat([]byte("z"), 300<<10), "~>"...))), false},
		{"object streams count too", streams(6, "/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode", near), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			bounded(t, func() { _, err = Inspect(bytes.NewReader(tt.in), lim) })
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), "too large once decoded") {
				t.Fatalf("error %q does not say too large", err)
			}
		})
	}
	t.Run("many small streams", func(t *testing.T) {
		in := streams(20000, "/Filter /FlateDecode", zlibBytes([]byte("q 1 0 0 1 0 0 cm Q")))
		start := time.Now()
		var err error
		bounded(t, func() { _, err = inspect(in) })
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d streams, %d bytes: %v", 20000, len(in), time.Since(start))
	})
}

// pdfSeeds are PDFs for the fuzzers.
func pdfSeeds(t testing.TB) [][]byte {
	objStm := "/Type /ObjStm /N {N} /First {First} "
	return [][]byte{
		scannerPDF(t),
		hiddenCatalogPDF("/N {N} /First {First} /Filter /FlateDecode", nil, evilCatalog, nil),
		hiddenCatalogPDF(objStm+"/Filter [/AHx /Fl] /DecodeParms [null << /Predictor 12 /Columns 8 >>]",
			func(b []byte) []byte { return hexBytes(zlibBytes(pngPredict(b, 8, 1, -1))) }, cleanCat, nil),
		hiddenCatalogPDF(objStm+"/Filter [/RL /A85]", func(b []byte) []byte { return runLengthBytes(a85Bytes(b)) }, cleanCat, nil),
		withStream("/Filter /FlateDecode /DecodeParms << /Predictor 2 /BitsPerComponent 16 /Colors 3 /Columns 4 >>", zlibBytes(noise(96, 4))),
	}
}

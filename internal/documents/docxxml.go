package documents

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"path"
	"strings"
	"unicode"
)

// The XML of a DOCX is read token by token rather than with xml.Unmarshal:
// Unmarshal matches an attribute by its local name in any namespace and keeps
// the last one, while Word reads only the unqualified attribute, so
// Type="…attachedTemplate" x:Type="…hyperlink" would be checked as a
// hyperlink and fetched by Word as a remote template. An attribute we read
// that appears more than once, in any namespace, is refused as ambiguous.

// errAmbiguousAttr means an element repeats an attribute we read.
var errAmbiguousAttr = errors.New("ambiguous attribute")

// attrs returns the named attributes of se (a missing one is ""), or
// errAmbiguousAttr when one of them is given twice, in any namespace, or
// only with a namespace prefix Word would not honour.
func attrs(se xml.StartElement, qualifiedOK bool, names ...string) (map[string]string, error) {
	out := make(map[string]string, len(names))
	for _, a := range se.Attr {
		for _, n := range names {
			if a.Name.Local != n {
				continue
			}
			if _, dup := out[n]; dup || (a.Name.Space != "" && !qualifiedOK) {
				return nil, errAmbiguousAttr
			}
			out[n] = a.Value
		}
	}
	return out, nil
}

// xmlElements calls fn with every start element of raw and its depth (the
// root is 1). The XML must be well formed UTF-8 (no CharsetReader is set, so
// a part declared in another encoding is refused).
func xmlElements(raw []byte, fn func(se xml.StartElement, depth int) error) error {
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			if err := fn(tok, depth); err != nil {
				return err
			}
		case xml.EndElement:
			depth--
		}
	}
}

// contentTypes is what [Content_Types].xml says: types by lower-case
// extension and by lower-case, %-decoded part name without the leading "/".
type contentTypes struct {
	defaults, overrides map[string]string
}

// of returns the content type of the part with the given (decoded,
// lower-case) entry name, or "" when none is declared.
func (c contentTypes) of(lower string) string {
	if ct, ok := c.overrides[lower]; ok {
		return ct
	}
	return c.defaults[strings.TrimPrefix(path.Ext(lower), ".")]
}

// checkContentTypes checks [Content_Types].xml: the main part is a plain
// .docx document and nothing is macro-enabled, ActiveX or OLE.
func checkContentTypes(raw []byte) (contentTypes, error) {
	ct := contentTypes{defaults: map[string]string{}, overrides: map[string]string{}}
	damaged := unsupported("the Word document has damaged content types")
	main := ""
	err := xmlElements(raw, func(se xml.StartElement, depth int) error {
		if depth == 1 {
			if se.Name.Local != "Types" {
				return damaged
			}
			return nil
		}
		a, err := attrs(se, false, "Extension", "PartName", "ContentType")
		if err != nil {
			return damaged
		}
		l := strings.ToLower(a["ContentType"])
		for _, w := range docxBannedTypeWords {
			if strings.Contains(l, w) {
				return unsupported("Word documents with macros or active content are not accepted (%s)", a["ContentType"])
			}
		}
		if depth != 2 {
			return nil
		}
		switch se.Name.Local {
		case "Default":
			ct.defaults[strings.ToLower(a["Extension"])] = l
		case "Override":
			name, err := url.PathUnescape(a["PartName"])
			if err != nil {
				return damaged
			}
			ct.overrides[strings.ToLower(strings.TrimPrefix(name, "/"))] = l
			if strings.EqualFold(a["PartName"], "/word/document.xml") {
				main = a["ContentType"]
			}
		}
		return nil
	})
	if errors.Is(err, ErrUnsupported) {
		return ct, err
	}
	if err != nil || len(raw) == 0 {
		return ct, damaged
	}
	if !strings.EqualFold(main, docxMainType) {
		if main == "" {
			return ct, unsupported("the zip archive is not a Word document (no type for word/document.xml)")
		}
		return ct, unsupported("the %s format is not accepted", main)
	}
	return ct, nil
}

// checkRels checks a relationships part: no macro, OLE, control or
// sub-document relationships, and nothing external except hyperlinks (which
// no reader fetches by itself). A TargetMode other than Internal counts as
// external.
func checkRels(raw []byte) error {
	damaged := unsupported("the Word document has damaged relationships")
	err := xmlElements(raw, func(se xml.StartElement, depth int) error {
		if depth == 1 {
			if se.Name.Local != "Relationships" {
				return damaged
			}
			return nil
		}
		a, err := attrs(se, false, "Type", "Target", "TargetMode", "Id")
		if err != nil {
			return damaged
		}
		typ := strings.ToLower(a["Type"])
		if i := strings.LastIndex(typ, "/"); i >= 0 {
			typ = typ[i+1:]
		}
		if docxBannedRelTypes[typ] {
			return unsupported("Word documents with macros, embedded objects or linked documents are not accepted (%s)", a["Type"])
		}
		if mode := a["TargetMode"]; mode != "" && mode != "Internal" && typ != "hyperlink" {
			return unsupported("Word documents that fetch external content are not accepted")
		}
		return nil
	})
	if errors.Is(err, ErrUnsupported) {
		return err
	}
	if err != nil || len(raw) == 0 {
		return damaged
	}
	return nil
}

// Field codes. A field's instruction is the text of its instrText runs
// between fldChar begin and separate (or end), or the instr attribute of a
// fldSimple; its first word names what it does. These names run a program
// (DDE, DDEAUTO) or fetch a file or URL when the document is opened or
// updated, handing the reviewer's address or NTLM credentials to whoever
// chose the path.
var bannedFields = map[string]bool{
	"DDE": true, "DDEAUTO": true, "INCLUDETEXT": true, "INCLUDE": true,
	"INCLUDEPICTURE": true, "IMPORT": true, "LINK": true, "DATABASE": true,
	"EMBED": true,
}

const (
	// maxFieldCode bounds the instruction of one field, maxFieldDepth the
	// nesting of fields; real documents stay far below both.
	maxFieldCode  = 64 << 10
	maxFieldDepth = 32
)

// fieldName is the first word of a field instruction, upper case.
func fieldName(instr string) string {
	s := strings.TrimLeftFunc(instr, unicode.IsSpace)
	end := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	if end >= 0 {
		s = s[:end]
	}
	return strings.ToUpper(s)
}

func checkFieldName(instr string) error {
	if n := fieldName(instr); bannedFields[n] {
		return unsupported("Word documents with %s fields are not accepted", n)
	}
	return nil
}

// field is one field being read: its instruction so far, and whether the
// instruction is still being read (before separate).
type field struct {
	code   strings.Builder
	inCode bool
}

// scanFields reads an XML part of a DOCX and refuses it when a field, simple
// or complex, has a banned name, or a name made by a nested field (Word
// evaluates a nested field first, so {{QUOTE 68 68 69} …} is a DDE field).
// Instruction runs outside any field are judged as a field of their own.
func scanFields(r io.Reader, name string) error {
	d := xml.NewDecoder(r)
	stack := []*field{{inCode: true}} // the bottom one holds stray instructions
	inInstr := 0
	top := func() *field { return stack[len(stack)-1] }
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return unsupported("the Word document has a damaged part (%q)", name)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			switch tok.Name.Local {
			case "fldSimple":
				a, err := attrs(tok, true, "instr")
				if err != nil {
					return unsupported("the Word document has a damaged part (%q)", name)
				}
				if err := checkFieldName(a["instr"]); err != nil {
					return err
				}
			case "instrText", "delInstrText":
				inInstr++
			case "fldChar":
				a, err := attrs(tok, true, "fldCharType")
				if err != nil {
					return unsupported("the Word document has a damaged part (%q)", name)
				}
				if err := fieldChar(&stack, a["fldCharType"]); err != nil {
					return err
				}
			}
		case xml.EndElement:
			if (tok.Name.Local == "instrText" || tok.Name.Local == "delInstrText") && inInstr > 0 {
				inInstr--
			}
		case xml.CharData:
			if inInstr > 0 && top().inCode {
				if top().code.Len()+len(tok) > maxFieldCode {
					return unsupported("the Word document has an oversized field (%q)", name)
				}
				top().code.Write(tok)
			}
		}
	}
	for _, f := range stack {
		if err := checkFieldName(f.code.String()); err != nil {
			return err
		}
	}
	return nil
}

// fieldChar applies a fldChar of the given type to the stack of open fields.
func fieldChar(stack *[]*field, typ string) error {
	s := *stack
	top := s[len(s)-1]
	if len(s) == 1 { // stray instructions end at any field character
		if err := checkFieldName(top.code.String()); err != nil {
			return err
		}
		top.code.Reset()
	}
	switch typ {
	case "begin":
		if len(s) > 1 && top.inCode && strings.TrimSpace(top.code.String()) == "" {
			return unsupported("Word documents with computed field names are not accepted")
		}
		if len(s) > maxFieldDepth {
			return unsupported("the Word document nests fields too deeply")
		}
		*stack = append(s, &field{inCode: true})
	case "separate", "end":
		if len(s) == 1 {
			return nil // unbalanced: nothing open
		}
		if top.inCode {
			if err := checkFieldName(top.code.String()); err != nil {
				return err
			}
			top.inCode = false
		}
		if typ == "end" {
			*stack = s[:len(s)-1]
		}
	default:
		return unsupported("the Word document has a damaged field")
	}
	return nil
}

// xmlScan says which parts scanFields reads.
type xmlScan int

const (
	scanNo       xmlScan = iota // declared as something else: media, fonts
	scanIfMarkup                // no declared type: scanned if it looks like XML
	scanYes                     // declared as XML or named .xml
)

// partScan decides how a part is scanned. A part declared as XML or named
// .xml is what Word parses; one with no declared type is invalid OPC, but
// a lenient (repairing) reader might parse it, so it is scanned when its
// first byte, after a byte order mark and white space, is '<' or it is in
// UTF-16.
func partScan(lower string, ct contentTypes) xmlScan {
	switch t := ct.of(lower); {
	case strings.Contains(t, "xml") || strings.HasSuffix(lower, ".xml"):
		return scanYes
	case t == "":
		return scanIfMarkup
	}
	return scanNo
}

// looksLikeMarkup reports whether the head of a part is XML (or UTF-16,
// which scanFields refuses).
func looksLikeMarkup(head []byte) bool {
	if bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF}) {
		return true
	}
	head = bytes.TrimPrefix(head, []byte("\xEF\xBB\xBF"))
	head = bytes.TrimLeft(head, " \t\r\n")
	return len(head) > 0 && head[0] == '<'
}

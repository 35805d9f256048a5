// Package documents checks, sanitises and encrypts the identity documents that
// users upload to ask for account recovery (SPEC §4, THREATS §4).
//
// # Intake
//
// [Inspect] reads at most [Limits].MaxBytes+1 bytes and decides the type by
// content alone: the file name and the client's Content-Type are not inputs.
// Accepted are JPEG, PNG, PDF, DOC and DOCX; everything else is refused with an
// error wrapping [ErrUnsupported] (HTTP 415), and an upload over the size limit
// with [ErrTooLarge] (HTTP 413). Every error Inspect returns wraps exactly one
// of the two.
//
//   - JPEG and PNG: the dimensions are read with DecodeConfig before anything
//     is decoded; more than MaxPixels (or more than MaxSide on one side, or a
//     decoded size above 4 bytes per allowed pixel, as 16-bit PNGs have) is
//     refused with ErrUnsupported ("image too large in pixels"), as SPEC says
//     415. A JPEG with more than 64 scans is refused as well (progressive scans
//     each touch the whole image, so many tiny scans are a CPU bomb). The image
//     is then decoded and re-encoded (JPEG at quality 90, PNG at default
//     compression), which drops EXIF/GPS, XMP, IPTC, ICC profiles, comments,
//     text chunks and any data after EOI/IEND (polyglots). Data after the end
//     of the image is stripped rather than refused, because phones append
//     such data (motion photos) to genuine pictures. The EXIF orientation of
//     a JPEG is applied to the pixels before the metadata goes; PNG eXIf
//     orientation is ignored (browsers and phones rarely write it).
//   - PDF: must start with "%PDF-" and end, bar whitespace, with "%%EOF". It is
//     kept as uploaded, after a bounded scan described on [Inspect].
//   - DOC: a Compound File (OLE2) read by a small bounded reader of the CFB
//     header, FAT and directory; it must hold a WordDocument stream with a
//     valid, unencrypted FIB and no macro or embedded-object storages, and its
//     text must hold no field that runs a program or fetches a file or URL
//     (DDE, DDEAUTO, INCLUDETEXT, INCLUDEPICTURE, LINK, DATABASE, …; the
//     text is read as Word saves it and as its piece table assembles it). It
//     is kept as uploaded (it cannot be re-rendered without a converter).
//   - DOCX: an Office Open XML package checked on its central directory
//     before anything is inflated: entry count (also bounded before
//     archive/zip allocates), declared total and per-entry ratio, Store or
//     Deflate only, no encryption, no overlapping entries, no duplicate,
//     absolute, drive-letter, backslash or ".." names (also after %-decoding,
//     as OPC readers do), no vbaProject.bin, oleObject, ActiveX, embeddings
//     or nested archives. [Content_Types].xml must type word/document.xml as
//     a plain .docx main part and name nothing macro-enabled; relationship
//     parts may not link macros, OLE objects, altChunks, controls, templates,
//     frames or sub-documents, nor anything external except hyperlinks.
//     Both are read token by token, and an attribute given twice (also under
//     another namespace prefix, which xml.Unmarshal would take and Word would
//     not) is refused. Then every entry is inflated through a limited reader
//     to verify sizes and CRCs; every part Word may parse as XML (declared as
//     XML, named .xml, or of no declared type but looking like markup;
//     32 MiB in all) must be well-formed UTF-8 XML with no field of the kinds
//     refused in a DOC, and no field whose name is itself a nested field.
//     Finally the package is rewritten entry by entry (raw compressed
//     data copied) so that comments, gaps between entries, directory entries,
//     prepended or trailing bytes and extra fields are gone.
//
// # At rest and on the way out
//
// A [Vault] seals a Document with envelope encryption (a fresh data key per
// document, wrapped by a key derived from the master key; XChaCha20-Poly1305),
// binding the owner, the request id and the kind as associated data.
// [Document.ContentType], [Document.Filename] and [Document.Inline] give the
// server-chosen values for serving a document to a reviewer; only re-encoded
// images are ever shown inline.
//
// The package keeps no state and is safe for concurrent use. Memory: Inspect
// holds the upload, the decoded image and the re-encoded output at once; at the
// default 40 MP cap that is a few hundred MB for a large (progressive) JPEG,
// so callers should bound how many inspections run at the same time.
package documents

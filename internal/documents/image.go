package documents

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
)

// jpegQuality is the quality of re-encoded JPEGs.
const jpegQuality = 90

// maxJPEGScans bounds the scans (SOS segments) of a JPEG: each progressive
// scan walks every block of the image, so a file of many tiny scans costs CPU
// out of all proportion to its size. Real progressive JPEGs have about ten.
const maxJPEGScans = 64

// maxBytesPerPixel is the decoded size allowed per pixel of Limits.MaxPixels:
// an 8-bit RGBA image at the pixel cap fits, a 16-bit one must be smaller.
const maxBytesPerPixel = 4

// checkDimensions applies the pixel limits to a DecodeConfig result.
func checkDimensions(cfg image.Config, lim Limits) error {
	w, h := int64(cfg.Width), int64(cfg.Height)
	if w <= 0 || h <= 0 {
		return unsupported("the image has no pixels (%d×%d)", w, h)
	}
	if w > int64(lim.MaxSide) || h > int64(lim.MaxSide) || w*h > lim.MaxPixels {
		return unsupported("image too large in pixels (%d×%d; at most %d pixels and %d on a side)",
			w, h, lim.MaxPixels, lim.MaxSide)
	}
	if w*h*int64(bytesPerPixel(cfg.ColorModel)) > maxBytesPerPixel*lim.MaxPixels {
		return unsupported("image too large in pixels for its colour depth (%d×%d)", w, h)
	}
	return nil
}

// bytesPerPixel is the in-memory size of one decoded pixel for a colour model
// the standard decoders return.
func bytesPerPixel(m color.Model) int {
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	case color.YCbCrModel:
		return 3 // at most, for 4:4:4
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 4
}

func inspectJPEG(data []byte, lim Limits) (*Document, error) {
	info := walkJPEG(data)
	if info.scans > maxJPEGScans {
		return nil, unsupported("the JPEG has %d scans (at most %d)", info.scans, maxJPEGScans)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, unsupported("not a valid JPEG image: %v", err)
	}
	if err := checkDimensions(cfg, lim); err != nil {
		return nil, err
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, unsupported("not a valid JPEG image: %v", err)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, unsupported("the JPEG decodes to other dimensions than it declares")
	}
	img = applyOrientation(img, info.orientation)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: jpegQuality}); err != nil {
		return nil, unsupported("the JPEG cannot be re-encoded: %v", err)
	}
	b := img.Bounds()
	return &Document{Kind: KindJPEG, Data: buf.Bytes(), Width: b.Dx(), Height: b.Dy()}, nil
}

func inspectPNG(data []byte, lim Limits) (*Document, error) {
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, unsupported("not a valid PNG image: %v", err)
	}
	if err := checkDimensions(cfg, lim); err != nil {
		return nil, err
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, unsupported("not a valid PNG image: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, unsupported("the PNG decodes to other dimensions than it declares")
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.DefaultCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, unsupported("the PNG cannot be re-encoded: %v", err)
	}
	return &Document{Kind: KindPNG, Data: buf.Bytes(), Width: b.Dx(), Height: b.Dy()}, nil
}

// jpegInfo is what walkJPEG learns from the marker segments.
type jpegInfo struct {
	orientation int // EXIF orientation 1..8 (1 when absent or invalid)
	scans       int // SOS segments before EOI
}

// walkJPEG walks the marker segments of a JPEG the way image/jpeg does (fill
// bytes, extraneous bytes, restart markers) up to EOI or the end of data,
// counting scans and reading the EXIF orientation. It skips entropy-coded
// data by looking for the next marker, so it counts every scan the decoder
// can see, and possibly more, never fewer. It never fails: the decoder
// judges validity.
func walkJPEG(b []byte) jpegInfo {
	info := jpegInfo{orientation: 1}
	exifSeen := false
	i := 2 // after SOI
	for i+1 < len(b) {
		if b[i] != 0xFF { // extraneous data, as the decoder tolerates
			i++
			continue
		}
		m := b[i+1]
		if m == 0x00 || m == 0xFF { // stuffed byte or fill byte
			i++
			continue
		}
		i += 2
		if m == 0xD9 { // EOI
			break
		}
		if m == 0x01 || (m >= 0xD0 && m <= 0xD7) { // TEM, RSTn: no length
			continue
		}
		if i+2 > len(b) {
			break
		}
		n := int(binary.BigEndian.Uint16(b[i:]))
		if n < 2 {
			break // the decoder refuses this
		}
		end := i + n
		if end > len(b) {
			end = len(b)
		}
		seg := b[i+2 : end]
		i = end
		switch {
		case m == 0xE1 && !exifSeen && bytes.HasPrefix(seg, []byte("Exif\x00\x00")):
			exifSeen = true
			info.orientation = exifOrientation(seg[6:])
		case m == 0xDA: // SOS: skip the entropy-coded data up to the next marker
			info.scans++
			for i+1 < len(b) {
				if b[i] == 0xFF {
					x := b[i+1]
					if x != 0x00 && x != 0xFF && !(x >= 0xD0 && x <= 0xD7) {
						break
					}
				}
				i++
			}
		}
	}
	return info
}

// exifOrientation reads tag 0x0112 from IFD0 of a TIFF-structured EXIF
// block, returning 1 when it is absent or invalid. Bounded by len(t).
func exifOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 1
	}
	off := uint64(bo.Uint32(t[4:8]))
	if off+2 > uint64(len(t)) {
		return 1
	}
	count := uint64(bo.Uint16(t[off:]))
	p := off + 2
	for k := uint64(0); k < count && p+12 <= uint64(len(t)); k, p = k+1, p+12 {
		e := t[p : p+12]
		if bo.Uint16(e[0:]) != 0x0112 {
			continue
		}
		if bo.Uint16(e[2:]) != 3 || bo.Uint32(e[4:]) != 1 { // SHORT, count 1
			return 1
		}
		if o := int(bo.Uint16(e[8:])); o >= 1 && o <= 8 {
			return o
		}
		return 1
	}
	return 1
}

// applyOrientation returns img turned upright for EXIF orientation o.
func applyOrientation(img image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return img
	}
	src, ok := img.(*image.RGBA)
	if !ok {
		src = image.NewRGBA(image.Rect(0, 0, img.Bounds().Dx(), img.Bounds().Dy()))
		draw.Draw(src, src.Bounds(), img, img.Bounds().Min, draw.Src)
	}
	sb := src.Bounds()
	w, h := sb.Dx(), sb.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < dh; y++ {
		for x := 0; x < dw; x++ {
			var sx, sy int
			switch o {
			case 2:
				sx, sy = w-1-x, y
			case 3:
				sx, sy = w-1-x, h-1-y
			case 4:
				sx, sy = x, h-1-y
			case 5:
				sx, sy = y, x
			case 6:
				sx, sy = y, h-1-x
			case 7:
				sx, sy = w-1-y, h-1-x
			case 8:
				sx, sy = w-1-y, x
			}
			si := src.PixOffset(sb.Min.X+sx, sb.Min.Y+sy)
			di := dst.PixOffset(x, y)
			copy(dst.Pix[di:di+4], src.Pix[si:si+4])
		}
	}
	return dst
}

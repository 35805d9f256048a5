package documents

import (
	"bytes"
	"image"
	"math/rand"
	"testing"
)

// noisy is a w×h photo-like image (noise compresses badly, as photos do).
func noisy(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewSource(1))
	r.Read(img.Pix)
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 0xFF
	}
	return img
}

func BenchmarkInspect(b *testing.B) {
	photo := noisy(2000, 1500)
	benches := []struct {
		name string
		in   []byte
	}{
		{"jpeg 3MP", encodeJPEG(b, photo)},
		{"jpeg 3MP rotated", jpegWithMetadata(b, photo, 6)},
		{"png 3MP", encodePNG(b, photo)},
		{"pdf", minimalPDF()},
		{"pdf scanner output", scannerPDF(b)},
		{"docx", minimalDOCX(b)},
		{"doc", wordCFB(b, fib(4096, 0))},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.in)))
			for b.Loop() {
				if _, err := Inspect(bytes.NewReader(bb.in), Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

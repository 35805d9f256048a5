package documents

import (
	"math/rand"
	"testing"
	"time"
)

func TestProbeDOC(t *testing.T) {
	seed := wordCFB(t, fib(4096, 0))
	r := rand.New(rand.NewSource(1))
	var worst time.Duration
	for i := 0; i < 200000; i++ {
		b := append([]byte{}, seed...)
		for k := 0; k < 1+r.Intn(8); k++ {
			p := r.Intn(len(b))
			switch r.Intn(3) {
			case 0:
				b[p] = byte(r.Intn(256))
			case 1:
				b[p] = 0xFF
			case 2:
				b[p] = 0
			}
		}
		t0 := time.Now()
		inspectDOC(b)
		if d := time.Since(t0); d > worst {
			worst = d
			t.Logf("iter %d worst %v", i, d)
		}
	}
}

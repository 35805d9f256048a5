package twostep

import (
	"os/exec"
	"strings"
	"testing"
)

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// The import rules of DESIGN.md: policy uses the standard library only,
// and only caddymodule (and the commands that wrap it) imports Caddy.
func TestImportRules(t *testing.T) {
	for _, dep := range goList(t, "-deps", "./policy") {
		if first, _, _ := strings.Cut(dep, "/"); strings.Contains(first, ".") && dep != "github.com/twostep-auth/twostep/policy" {
			t.Errorf("policy depends on %s; it must use the standard library only", dep)
		}
	}
	for _, pkg := range goList(t, "./...") {
		if strings.Contains(pkg, "/caddymodule") || strings.HasSuffix(pkg, "/cmd/caddy") || pkg == "github.com/twostep-auth/twostep" || strings.Contains(pkg, "/test/") {
			continue
		}
		for _, dep := range goList(t, "-deps", pkg) {
			if strings.HasPrefix(dep, "github.com/caddyserver/") {
				t.Errorf("%s imports Caddy (%s); only caddymodule may", pkg, dep)
				break
			}
		}
	}
}

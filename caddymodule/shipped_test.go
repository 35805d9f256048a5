package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Every Caddyfile the project ships passes `caddy validate` (adapt, then
// provision every module without starting anything). This stands in for
// building the Dockerfile, which needs a container engine.
func TestShippedCaddyfilesValidate(t *testing.T) {
	files := []string{"../Caddyfile"}
	more, _ := filepath.Glob("../examples/*.Caddyfile")
	files = append(files, more...)
	if len(files) < 3 {
		t.Fatalf("expected the demo and the examples, found %v", files)
	}
	root, _ := filepath.Abs("..")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			abs, _ := filepath.Abs(f)
			body, err := os.ReadFile(abs)
			if err != nil {
				t.Fatal(err)
			}
			t.Chdir(root)
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			js, _, err := caddyfile.Adapter{ServerType: httpcaddyfileServerType()}.Adapt(body, map[string]any{"filename": abs})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			// Paths inside the container do not exist here: point them at
			// the example users file.
			var cfg caddy.Config
			if err := json.Unmarshal(js, &cfg); err != nil {
				t.Fatal(err)
			}
			if raw, ok := cfg.AppsRaw["twostep"]; ok {
				var app map[string]any
				_ = json.Unmarshal(raw, &app)
				if p, _ := app["users_file"].(string); p != "" {
					if _, err := os.Stat(p); err != nil {
						app["users_file"] = filepath.Join(root, "examples", "users.yml")
					}
				}
				if st, ok := app["store"].(map[string]any); ok {
					st["path"] = filepath.Join(t.TempDir(), "twostep.db")
				}
				cfg.AppsRaw["twostep"], _ = json.Marshal(app)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("validate: %v", err)
			}
		})
	}
}

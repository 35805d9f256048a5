package caddymodule

import (
	"bytes"
	"encoding/json"

	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func httpcaddyfileServerType() httpcaddyfile.ServerType { return httpcaddyfile.ServerType{} }

func prettyJSON(b []byte) (string, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "\t"); err != nil {
		return "", err
	}
	return buf.String(), nil
}

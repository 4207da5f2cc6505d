package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/aemproxy/aemproxy/internal/sim"
)

func TestValidateTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := sim.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("server", true)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.Issue("other", true)
	if err != nil {
		t.Fatal(err)
	}
	cert := writeFile(t, dir, "server.crt", string(certPEM))
	key := writeFile(t, dir, "server.key", string(keyPEM))
	wrongKey := writeFile(t, dir, "other.key", string(otherKey))
	caFile := writeFile(t, dir, "ca.pem", string(ca.PEM()))
	notPEM := writeFile(t, dir, "not.pem", "hello")

	tests := []struct {
		name string
		tls  TLS
		want []string // substrings of the error; none means valid
		auth string   // EffectiveClientAuth when valid
	}{
		{"off", TLS{}, nil, "none"},
		{"server only", TLS{CertFile: cert, KeyFile: key}, nil, "none"},
		{"mTLS defaults to require", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile}, nil, "require"},
		{"request", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile, ClientAuth: "request"}, nil, "request"},
		{"key missing", TLS{CertFile: cert}, []string{"tls.key_file: missing"}, ""},
		{"client CA without TLS", TLS{ClientCAFile: caFile}, []string{"need tls.cert_file"}, ""},
		{"every problem at once",
			TLS{CertFile: dir + "/nope.crt", KeyFile: key, ClientCAFile: notPEM, ClientAuth: "always"},
			[]string{"tls.cert_file:", "nope.crt", "tls.client_ca_file:", "no PEM certificate", `tls.client_auth: "always"`}, ""},
		{"key does not match", TLS{CertFile: cert, KeyFile: wrongKey}, []string{"private key does not match public key"}, ""},
		{"require without CA", TLS{CertFile: cert, KeyFile: key, ClientAuth: "require"}, []string{"needs client_ca_file"}, ""},
		{"none with CA", TLS{CertFile: cert, KeyFile: key, ClientCAFile: caFile, ClientAuth: "none"}, []string{"remove one"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := errors.Join(tt.tls.validate()...)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v; want valid", err)
				}
				if got := tt.tls.EffectiveClientAuth(); got != tt.auth {
					t.Errorf("client auth: got %q; want %q", got, tt.auth)
				}
				return
			}
			if err == nil {
				t.Fatalf("got valid; want errors mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadResolvesTLSPaths(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "aemproxy.yaml", "tls:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  client_ca_file: tls/ca.pem\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile} {
		if !strings.HasPrefix(p, dir) {
			t.Errorf("path %q is not resolved against the file's directory %s", p, dir)
		}
	}
}

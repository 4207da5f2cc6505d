package config

import (
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aemproxy/aemproxy/internal/sim"
)

func TestValidateEgressTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := sim.NewCA("egress CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("client", false)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKeyPEM, err := ca.Issue("other", false)
	if err != nil {
		t.Fatal(err)
	}
	cert := writeFile(t, dir, "client.crt", string(certPEM))
	key := writeFile(t, dir, "client.key", string(keyPEM))
	otherKey := writeFile(t, dir, "other.key", string(otherKeyPEM))
	encrypted := writeFile(t, dir, "encrypted.key", string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("not really a key, but encrypted")})))
	caFile := writeFile(t, dir, "ca.pem", string(ca.PEM()))
	notPEM := writeFile(t, dir, "not.pem", "hello")
	missing := filepath.Join(dir, "missing.pem")
	creds := writeFile(t, dir, "creds.json", "{}")
	upstream, _ := ParseURL("https://10.1.2.3")
	good := func() Config {
		c := Default()
		c.Routes = []Route{RouteDefaults(Route{Name: "author", Upstream: upstream, Credentials: creds})}
		return c
	}

	c := good()
	c.IMS.CAFile, c.IMS.ClientCertFile, c.IMS.ClientKeyFile, c.IMS.ServerName = caFile, cert, key, "ims-gateway.internal"
	r := &c.Routes[0]
	r.CAFile, r.ClientCertFile, r.ClientKeyFile, r.ServerName = caFile, cert, key, "author.example.com"
	if err := c.Validate(); err != nil {
		t.Fatalf("good egress TLS: %v", err)
	}

	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"ims cert without key", func(c *Config) { c.IMS.ClientCertFile = cert }, []string{"ims.client_key_file: missing"}},
		{"route key without cert", func(c *Config) { c.Routes[0].ClientKeyFile = key }, []string{"routes[0] (author).client_cert_file: missing"}},
		{"missing files", func(c *Config) {
			c.IMS.CAFile = missing
			c.Routes[0].ClientCertFile, c.Routes[0].ClientKeyFile = missing, key
		}, []string{"ims.ca_file: open " + missing, "routes[0] (author).client_cert_file: stat " + missing}},
		{"CA file without certificates", func(c *Config) { c.Routes[0].CAFile = notPEM }, []string{"routes[0] (author).ca_file: " + notPEM + " holds no PEM certificate"}},
		{"encrypted key", func(c *Config) { c.IMS.ClientCertFile, c.IMS.ClientKeyFile = cert, encrypted }, []string{"ims.client_key_file: " + encrypted + " holds an encrypted private key; decrypt it"}},
		{"key of another certificate", func(c *Config) { c.Routes[0].ClientCertFile, c.Routes[0].ClientKeyFile = cert, otherKey }, []string{"routes[0] (author).client_key_file: " + otherKey + " does not match"}},
		{"bad server names", func(c *Config) { c.IMS.ServerName = "https://ims"; c.Routes[0].ServerName = "aem:443" }, []string{"ims.server_name:", "routes[0] (author).server_name:"}},
		{"everything at once", func(c *Config) {
			c.IMS.ClientKeyFile = key
			c.IMS.ServerName = "a b"
			c.Routes[0].CAFile = notPEM
			c.Routes[0].ClientCertFile, c.Routes[0].ClientKeyFile = cert, encrypted
		}, []string{"ims.client_cert_file: missing", "ims.server_name:", "routes[0] (author).ca_file:", "routes[0] (author).client_key_file:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate: got nil; want an error mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %q", err, w)
				}
			}
			for _, line := range strings.Split(string(keyPEM)+string(otherKeyPEM), "\n") {
				if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
					t.Errorf("error reveals key material: %q", err)
				}
			}
		})
	}
}

func TestEgressTLSPathsAreRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "aemproxy.yaml", `
ims:
  ca_file: egress/ca.pem
  client_cert_file: egress/ims.crt
  client_key_file: egress/ims.key
  server_name: ims-gateway.internal
routes:
  - name: author
    upstream: https://10.1.2.3
    client_cert_file: egress/aem.crt
    client_key_file: /abs/aem.key
    server_name: author.example.com
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.IMS.CAFile, c.IMS.ClientCertFile, c.IMS.ClientKeyFile, c.Routes[0].ClientCertFile, c.Routes[0].ClientKeyFile}
	want := []string{
		filepath.Join(dir, "egress/ca.pem"), filepath.Join(dir, "egress/ims.crt"), filepath.Join(dir, "egress/ims.key"),
		filepath.Join(dir, "egress/aem.crt"), "/abs/aem.key",
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("path %d: got %q; want %q", i, got[i], want[i])
		}
	}
	if c.IMS.ServerName != "ims-gateway.internal" || c.Routes[0].ServerName != "author.example.com" {
		t.Errorf("server names: got %q, %q", c.IMS.ServerName, c.Routes[0].ServerName)
	}
	if et := c.Routes[0].EgressTLS(); et.CertFile != want[3] || et.KeyFile != want[4] || et.ServerName != "author.example.com" {
		t.Errorf("route EgressTLS: got %+v", et)
	}
}

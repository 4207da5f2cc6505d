package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/sim"
)

// runCheckConfig runs `aemproxy check --config path` and returns its
// stdout, its stderr and its error.
func runCheckConfig(t *testing.T, path string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"aemproxy", "check", "--config", path}, func(string) string { return "" }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// assertNotRevealed fails if any secret appears in what check wrote or
// returned.
func assertNotRevealed(t *testing.T, stdout, stderr string, err error, secrets ...string) {
	t.Helper()
	all := stdout + stderr
	if err != nil {
		all += err.Error()
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("check's output reveals %q:\n%s", s, all)
		}
	}
}

func TestCheckAPIKeysFiles(t *testing.T) {
	const (
		goodKey   = "check-good-key-0123456789abcdef"
		brokenKey = "check-key-in-broken-file-0123456789"
		short     = "short-secret"
	)
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("good-keys", "# clients\n"+goodKey+"\nsha256:"+strings.Repeat("ab", 32)+"\n")
	write("broken-keys", "# clients\n"+short+"\n"+brokenKey+"\nsha256:"+brokenKey+"\n")
	write("empty-keys", "# nobody yet\n\n")
	route := func(name, keys string) string {
		return fmt.Sprintf("  - name: %s\n    upstream: https://author-p1-e2.adobeaemcloud.com\n    credentials_kind: none\n    path_prefix: /%s\n    access:\n      api_keys_file: %s\n", name, name, keys)
	}
	write("aemproxy.yaml", "routes:\n"+route("good", "good-keys")+route("broken", "broken-keys")+route("empty", "empty-keys")+route("missing", "missing-keys"))

	stdout, stderr, err := runCheckConfig(t, filepath.Join(dir, "aemproxy.yaml"))
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("got %v; want problems and exit 1\nstdout:\n%s", err, stdout)
	}
	for _, want := range []string{
		"3 problem(s)",
		"route broken: access.api_keys_file " + filepath.Join(dir, "broken-keys") + ": line 2: a plain key must be at least 16 bytes; line 4: want sha256: and 64 hex digits",
		"route empty: access.api_keys_file " + filepath.Join(dir, "empty-keys") + " holds no key",
		filepath.Join(dir, "missing-keys") + ": no such file", // from config validation
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems do not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "line 3") {
		t.Errorf("problems name line 3, which holds a valid key:\n%v", err)
	}
	if strings.Count(err.Error(), "missing-keys") != 1 {
		t.Errorf("the unreadable file is reported %d times; want once:\n%v", strings.Count(err.Error(), "missing-keys"), err)
	}
	if !strings.Contains(stdout, "route good: API keys file OK (2 keys)") {
		t.Errorf("stdout does not report the good file:\n%s", stdout)
	}
	assertNotRevealed(t, stdout, stderr, err, goodKey, brokenKey, short)
}

func TestCheckTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := sim.NewCA("check CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("proxy.internal", true)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKeyPEM, err := ca.Issue("other", true)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"server.crt": certPEM, "server.key": keyPEM, "other.key": otherKeyPEM,
		"ca.pem": ca.PEM(), "not-pem": []byte("hello\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The base64 body of each private key: none of it may ever be shown.
	secrets := []string{pemBody(keyPEM), pemBody(otherKeyPEM)}

	for _, tc := range []struct {
		name string
		tls  string
		want []string // problems; none means check passes
		line string   // on stdout when check passes
	}{
		{"server certificate", "cert_file: server.crt\n  key_file: server.key", nil, `tls: certificate "proxy.internal" OK; WARNING: it expires in less than a day`},
		{"client certificates", "cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.pem", nil, "client certificates: require"},
		{"key does not match", "cert_file: server.crt\n  key_file: other.key", []string{"private key does not match public key"}, ""},
		{"cert and key swapped", "cert_file: server.key\n  key_file: server.crt", []string{"tls: cert_file " + filepath.Join(dir, "server.key")}, ""},
		{"key as both", "cert_file: server.key\n  key_file: server.key", []string{"tls: cert_file"}, ""},
		{"unreadable certificate", "cert_file: nope.crt\n  key_file: server.key", []string{"tls.cert_file:", "nope.crt"}, ""},
		{"client CA file without certificates", "cert_file: server.crt\n  key_file: server.key\n  client_ca_file: not-pem", []string{"tls.client_ca_file: " + filepath.Join(dir, "not-pem") + " holds no PEM certificate"}, ""},
		{"every problem at once", "cert_file: server.crt\n  key_file: other.key\n  client_ca_file: missing-ca.pem", []string{"private key does not match", "tls.client_ca_file:", "missing-ca.pem"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			yaml := "tls:\n  " + tc.tls + "\nroutes:\n  - name: author\n    upstream: https://author-p1-e2.adobeaemcloud.com\n    credentials_kind: none\n"
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := runCheckConfig(t, path)
			assertNotRevealed(t, stdout, stderr, err, secrets...)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("got %v; want no problem", err)
				}
				if !strings.Contains(stdout, tc.line) || !strings.HasSuffix(stdout, "OK\n") {
					t.Errorf("stdout does not say %q and OK:\n%s", tc.line, stdout)
				}
				return
			}
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("got %v; want problems and exit 1", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems do not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// pemBody is the base64 of a PEM block, without its BEGIN and END lines.
func pemBody(p []byte) string {
	lines := strings.Split(strings.TrimSpace(string(p)), "\n")
	return strings.Join(lines[1:len(lines)-1], "\n")
}

// selfSigned writes a server certificate valid from notBefore to notAfter
// and its key, and returns their paths.
func selfSigned(t *testing.T, dir string, notBefore, notAfter time.Time) config.TLS {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dated"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := config.TLS{CertFile: filepath.Join(dir, "dated.crt"), KeyFile: filepath.Join(dir, "dated.key")}
	if err := os.WriteFile(c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckTLSCertificateDates(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(100 * 24 * time.Hour)
	c := selfSigned(t, dir, start, end)
	for _, tc := range []struct {
		name          string
		now           time.Time
		line, problem string
	}{
		{"valid", start.Add(time.Hour), `tls: certificate "dated" OK, valid until 2026-04-11 (99 days); client certificates: none`, ""},
		{"ending soon", end.Add(-10*24*time.Hour - time.Hour), "WARNING: it expires in 10 days (2026-04-11T00:00:00Z)", ""},
		{"ending today", end.Add(-time.Hour), "WARNING: it expires in less than a day", ""},
		{"expired", end, "", "the certificate expired at 2026-04-11T00:00:00Z"},
		{"not yet valid", start.Add(-time.Second), "", "the certificate is not valid before 2026-01-01T00:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, problem := checkTLSCertificate(c, tc.now)
			if tc.problem == "" && (problem != "" || !strings.Contains(line, tc.line)) {
				t.Errorf("got %q, problem %q; want %q", line, problem, tc.line)
			}
			if tc.problem != "" && (line != "" || !strings.Contains(problem, tc.problem) || !strings.Contains(problem, c.CertFile)) {
				t.Errorf("got %q, problem %q; want a problem naming %s: %q", line, problem, c.CertFile, tc.problem)
			}
		})
	}
	missing := config.TLS{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: c.KeyFile}
	if line, problem := checkTLSCertificate(missing, start.Add(time.Hour)); line != "" || problem != "" {
		t.Errorf("unreadable pair: got %q, %q; want nothing (config validation reports it)", line, problem)
	}
}

// TestCheckReportsExpiredTLSCertificate runs check on a config whose
// certificate expired: one problem, exit 1.
func TestCheckReportsExpiredTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	c := selfSigned(t, dir, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	path := filepath.Join(dir, "aemproxy.yaml")
	yaml := fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\nroutes:\n  - name: author\n    upstream: https://author-p1-e2.adobeaemcloud.com\n    credentials_kind: none\n", c.CertFile, c.KeyFile)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runCheckConfig(t, path)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "1 problem(s)") || !strings.Contains(err.Error(), "tls.cert_file "+c.CertFile+": the certificate expired at") {
		t.Errorf("got %v; want exactly one problem: the certificate expired\nstdout:\n%s", err, stdout)
	}
}

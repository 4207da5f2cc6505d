package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// TestNoSecretInAnyOutputOverALifetime runs the program through a whole
// life: serve, a failed exchange, a credentials rotation, the admin
// endpoints, check --online and token, shutdown. Then it searches
// everything the program wrote and every response it gave for every
// secret involved.
func TestNoSecretInAnyOutputOverALifetime(t *testing.T) {
	dir := t.TempDir()
	const (
		outboundAPIKey = "outbound-api-key-3f9a1c7e5b"
		clientKey      = "inbound-client-key-8d2e6a4b0c"
	)
	keysFile := filepath.Join(dir, "api-keys")
	cfgPath := filepath.Join(dir, "aemproxy.yaml")
	if err := os.WriteFile(keysFile, []byte(clientKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("routes:\n  - name: default\n    api_key: %s\n    access:\n      api_keys_file: %s\n", outboundAPIKey, keysFile)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, out syncBuffer // out: what the test received from the program
	h := startHarness(t, harnessOptions{extra: []string{"--config", cfgPath}, stdout: &stdout})
	h.waitReady(http.StatusOK)

	fetch := func(url string, key bool) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if key {
			req.Header.Set("X-Aemproxy-Key", clientKey)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		dump, err := httputil.DumpResponse(resp, true)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(dump)
		return resp.StatusCode
	}

	// Serve, with the outbound API key on /adobe/.
	for _, p := range []string{"/content/a.json", "/adobe/sites/x", "/content/a.json?token=query-secret"} {
		if got := fetch(h.proxy+p, true); got != http.StatusOK {
			t.Fatalf("%s: got %d; want 200", p, got)
		}
	}
	fetch(h.proxy+"/content/a.json", false) // refused: no client key

	// A failed exchange: AEM refuses the token, IMS refuses the new JWT.
	h.ims.Fail(1, http.StatusBadRequest, "invalid_client", "invalid client secret", 0)
	h.ims.RevokeAll()
	fetch(h.proxy+"/content/b.json", true)

	// Rotate: a second credential replaces the first in the file.
	creds2, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.ims.Register(creds2)
	data, err := creds2.JSON(sim.JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, h.credsPath, data)
	// The reload exchanges the new credential for a token at once.
	h.waitLog("credentials file reloaded")
	served := false
	for range 100 { // up to 10 s for the new credential's token
		if fetch(h.proxy+"/content/c.json", true) == http.StatusOK {
			served = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !served {
		t.Fatalf("no 200 with the rotated credential within 10s; logs:\n%s\nresponses:\n%s", h.logs, out.String()[max(0, out.Len()-3000):])
	}
	fetch(h.admin+"/readyz", false)
	fetch(h.admin+"/metrics", false)

	getenv := func(string) string { return "" }
	if err := run(context.Background(), []string{"aemproxy", "check", "--credentials", h.credsPath, "--online", "--ims-url", h.imsURL}, getenv, &out, &out); err != nil {
		t.Errorf("check --online: %v", err)
	}
	// token's stdout is the token, by design; its stderr is searched.
	var tokenOut bytes.Buffer
	if err := run(context.Background(), []string{"aemproxy", "token", "--credentials", h.credsPath, "--ims-url", h.imsURL}, getenv, &tokenOut, &out); err != nil {
		t.Errorf("token: %v", err)
	}
	if tokenOut.Len() == 0 {
		t.Errorf("token printed nothing")
	}
	h.stop()
	if err := <-h.done; err != nil {
		t.Errorf("run: %v", err)
	}
	h.done <- nil // for the cleanup

	secrets := map[string]string{
		"client secret 1":  h.creds.ClientSecret,
		"client secret 2":  creds2.ClientSecret,
		"outbound API key": outboundAPIKey,
		"client API key":   clientKey,
		"query value":      "query-secret",
	}
	for i, c := range []*sim.Credentials{h.creds, creds2} {
		for _, f := range []sim.KeyFormat{sim.PKCS1, sim.PKCS8} {
			keyPEM, err := c.PrivateKeyPEM(f)
			if err != nil {
				t.Fatal(err)
			}
			for j, line := range strings.Split(string(keyPEM), "\n") {
				if len(line) > 20 && !strings.HasPrefix(line, "-----") {
					secrets[fmt.Sprintf("private key %d (format %d) line %d", i+1, f, j)] = line
				}
			}
		}
	}
	tokens := map[string]bool{}
	sawAPIKey := false
	for _, r := range h.aem.Requests() {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tokens[tok] = true
			secrets["access token "+tok[len(tok)-8:]] = tok
			secrets["signature of access token "+tok[len(tok)-8:]] = tok[strings.LastIndex(tok, ".")+1:]
		}
		sawAPIKey = sawAPIKey || r.Header.Get("X-Api-Key") == outboundAPIKey
	}
	// The search proves something only if the secrets were in play.
	if len(tokens) < 2 {
		t.Errorf("AEM saw %d distinct tokens; want at least 2 (before and after the rotation)", len(tokens))
	}
	if !sawAPIKey {
		t.Errorf("AEM never received the outbound API key")
	}
	if h.ims.Exchanges() < 3 {
		t.Errorf("IMS saw %d exchanges; want at least 3", h.ims.Exchanges())
	}
	captured := map[string]string{"stderr (logs)": h.logs.String(), "stdout": stdout.String(), "responses and check/token output": out.String()}
	for name, text := range captured {
		for what, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contains the %s", name, what)
			}
		}
	}
	for _, want := range []string{`"message":"request"`, "invalid_client", "credentials file reloaded"} {
		if !strings.Contains(h.logs.String(), want) {
			t.Errorf("logs lack %q; the search proves less than it should", want)
		}
	}
	if !strings.Contains(out.String(), "aemproxy_") {
		t.Errorf("no metrics captured")
	}
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

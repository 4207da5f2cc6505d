package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mintToken gets a real access token from the harness's simulated IMS
// through `aemproxy token`, the way a script would.
func mintToken(t *testing.T, h *harness) tokenOutput {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), []string{"aemproxy", "token", "--credentials", h.credsPath, "--ims-url", h.imsURL},
		func(string) string { return "" }, &out, io.Discard)
	if err != nil {
		t.Fatalf("aemproxy token: %v", err)
	}
	var tok tokenOutput
	if err := json.Unmarshal(out.Bytes(), &tok); err != nil {
		t.Fatalf("aemproxy token printed %q: %v", out.String(), err)
	}
	return tok
}

func TestTokenCommand(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK) // the proxy's own exchange is done; count only token's
	before := h.ims.Exchanges()
	tok := mintToken(t, h)
	if tok.TokenType != "bearer" || h.ims.ValidateAccessToken(tok.AccessToken) != nil {
		t.Errorf("got type %q and a token the IMS does not accept; want a valid bearer token", tok.TokenType)
	}
	if tok.ExpiresIn < 86000 || tok.ExpiresIn > 86400 {
		t.Errorf("expires_in: got %d; want about 86400 seconds", tok.ExpiresIn)
	}
	if at, err := time.Parse(time.RFC3339, tok.ExpiresAt); err != nil || time.Until(at) < 23*time.Hour {
		t.Errorf("expires_at: got %q; want an RFC 3339 time about 24 h ahead", tok.ExpiresAt)
	}
	if got := h.ims.Exchanges() - before; got != 1 {
		t.Errorf("exchanges: got %d; want 1", got)
	}

	var stderr bytes.Buffer
	err := run(context.Background(), []string{"aemproxy", "token"}, func(string) string { return "" }, io.Discard, &stderr)
	if exitCode(err) != 2 {
		t.Errorf("token without credentials: got %v (exit %d); want a usage error", err, exitCode(err))
	}
	h.ims.Fail(1, http.StatusUnauthorized, "invalid_client", "invalid client secret", 0)
	err = run(context.Background(), []string{"aemproxy", "token", "--credentials", h.credsPath, "--ims-url", h.imsURL},
		func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "invalid_client") || exitCode(err) != 1 {
		t.Errorf("token with IMS refusing: got %v; want an invalid_client error, exit 1", err)
	}
	if strings.Contains(stderr.String()+err.Error(), h.creds.ClientSecret) {
		t.Error("output reveals the client secret")
	}
}

func TestCheckCommand(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK) // the proxy's own exchange is done; count only check's
	var out bytes.Buffer
	if err := run(context.Background(), []string{"aemproxy", "check", "--credentials", h.credsPath}, os.Getenv, &out, io.Discard); err != nil {
		t.Fatalf("check of good credentials: %v", err)
	}
	if !strings.Contains(out.String(), "service_credentials credentials OK") || !strings.Contains(out.String(), "certificate valid until") {
		t.Errorf("check output: %q", out.String())
	}
	before := h.ims.Exchanges()
	out.Reset()
	if err := run(context.Background(), []string{"aemproxy", "check", "--credentials", h.credsPath, "--online", "--ims-url", h.imsURL}, os.Getenv, &out, io.Discard); err != nil {
		t.Fatalf("check --online: %v", err)
	}
	if h.ims.Exchanges()-before != 1 || !strings.Contains(out.String(), "exchange OK") {
		t.Errorf("check --online: %d exchanges, output %q; want one exchange reported OK", h.ims.Exchanges()-before, out.String())
	}

	// A config with two broken routes: every problem listed, exit 1.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "garbage.json"), []byte(`{"hello":"world"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "aemproxy.yaml"), []byte(`
routes:
  - name: a
    upstream: https://author-p1-e2.adobeaemcloud.com
    credentials: garbage.json
  - name: b
    upstream: https://publish-p1-e2.adobeaemcloud.com
    credentials: missing.json
`), 0o600)
	out.Reset()
	err := run(context.Background(), []string{"aemproxy", "check", "--config", filepath.Join(dir, "aemproxy.yaml")}, os.Getenv, &out, io.Discard)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("check of a broken config: got %v; want problems and exit 1", err)
	}
	for _, want := range []string{"route a:", "route b", "missing.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check error %q does not mention %q", err, want)
		}
	}
}

// fakeDevToken builds a token shaped like an IMS access token (a JWT whose
// payload carries created_at and expires_in in ms) without a valid
// signature: enough for the proxy, which never verifies tokens.
func fakeDevToken(createdAt time.Time, lifetime time.Duration) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(map[string]string{
		"type":       "access_token",
		"created_at": strconv.FormatInt(createdAt.UnixMilli(), 10),
		"expires_in": strconv.FormatInt(lifetime.Milliseconds(), 10),
	})
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(payload) + ".c2ln"
}

func TestDevTokenUsedAndReloaded(t *testing.T) {
	var tokenPath string
	h := startHarness(t, harnessOptions{credentials: func(h *harness) []string {
		tokenPath = filepath.Join(t.TempDir(), "local-token.json")
		tok := mintToken(t, h)
		os.WriteFile(tokenPath, []byte(`{"ok":true,"statusCode":200,"accessToken":"`+tok.AccessToken+`"}`), 0o600)
		return []string{"--credentials", tokenPath}
	}})
	h.waitReady(http.StatusOK)
	exchanges := h.ims.Exchanges()
	if resp, body := h.get("/content/a.json"); resp.StatusCode != http.StatusOK {
		t.Fatalf("with a dev token: got %d %s", resp.StatusCode, body)
	}
	first := h.lastAEMRequest().Header.Get("Authorization")

	// Save a new token over the file (atomically, as editors do).
	next := mintToken(t, h)
	tmp := tokenPath + ".tmp"
	os.WriteFile(tmp, []byte(`{"accessToken":"`+next.AccessToken+`"}`), 0o600)
	if err := os.Rename(tmp, tokenPath); err != nil {
		t.Fatal(err)
	}
	h.waitLog("credentials file reloaded")
	h.get("/content/b.json")
	if got := h.lastAEMRequest().Header.Get("Authorization"); got != "Bearer "+next.AccessToken || got == first {
		t.Errorf("after saving a new token: AEM got a different credential than the new token")
	}
	// The proxy itself never went to IMS: the dev token is used as is
	// (the two mintToken calls account for the exchanges).
	if got := h.ims.Exchanges() - exchanges; got != 1 {
		t.Errorf("IMS exchanges while serving a dev token: got %d; want only the test's own 1", got)
	}
}

func TestExpiredDevTokenAnsweredLocally(t *testing.T) {
	expiredAt := time.Now().Add(-time.Hour).Truncate(time.Second)
	tok := fakeDevToken(expiredAt.Add(-24*time.Hour), 24*time.Hour)
	h := startHarness(t, harnessOptions{
		credentials: func(*harness) []string { return nil },
		env:         map[string]string{"AEMPROXY_TOKEN": tok},
	})
	h.waitReady(http.StatusServiceUnavailable)
	resp, body := h.get("/content/a.json")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %d %s; want 503 from the proxy itself", resp.StatusCode, body)
	}
	for _, want := range []string{"expired", expiredAt.UTC().Format(time.RFC3339), "Local Development Token"} {
		if !strings.Contains(body, want) {
			t.Errorf("body %s does not mention %q", body, want)
		}
	}
	if h.aem.Count() != 0 {
		t.Errorf("AEM received %d requests with an expired token; want 0", h.aem.Count())
	}
	if strings.Contains(body, tok) || strings.Contains(h.logs.String(), tok) {
		t.Error("the token appears in the response or the logs")
	}
}

func TestLocalSDKCredentials(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		env   map[string]string
		want  string // Authorization AEM receives
	}{
		{"sdk defaults", []string{"--credentials-kind", "sdk_defaults"}, nil, "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:admin"))},
		{"basic from env", []string{"--basic-user", "dev"}, map[string]string{"AEMPROXY_BASIC_PASSWORD": "s3cret-pw"}, "Basic " + base64.StdEncoding.EncodeToString([]byte("dev:s3cret-pw"))},
		{"none", []string{"--credentials-kind", "none"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startHarness(t, harnessOptions{credentials: func(*harness) []string { return tt.flags }, env: tt.env})
			h.aem.Validate = nil // a local SDK, not IMS-protected
			req, _ := http.NewRequest(http.MethodGet, h.proxy+"/content/a.json", nil)
			req.Header.Set("Authorization", "Basic c3B5OnNweQ==")
			if resp, body := h.do(req); resp.StatusCode != http.StatusOK {
				t.Fatalf("got %d %s", resp.StatusCode, body)
			}
			if got := h.lastAEMRequest().Header.Get("Authorization"); got != tt.want {
				t.Errorf("AEM got Authorization %q; want %q", got, tt.want)
			}
			if strings.Contains(h.logs.String(), "s3cret-pw") {
				t.Error("the password appears in the logs")
			}
			if h.ims.Exchanges() != 0 {
				t.Errorf("IMS exchanges: got %d; want 0", h.ims.Exchanges())
			}
		})
	}
}

func TestOAuthServerToServer(t *testing.T) {
	h := startHarness(t, harnessOptions{credentials: func(h *harness) []string {
		h.ims.RegisterOAuth("oauth-client-1", "oauth-secret-1", []string{"AdobeID", "openid", "aem.folders"})
		p := filepath.Join(t.TempDir(), "oauth.json")
		os.WriteFile(p, []byte(`{"client_id":"oauth-client-1","client_secret":"oauth-secret-1","scopes":["AdobeID","openid","aem.folders"]}`), 0o600)
		return []string{"--credentials", p}
	}})
	h.waitReady(http.StatusOK)
	for _, tt := range []struct{ path, apiKey string }{
		{"/adobe/folders/", "oauth-client-1"},
		{"/content/a.json", ""},
	} {
		if resp, body := h.get(tt.path); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: got %d %s", tt.path, resp.StatusCode, body)
		}
		got := h.lastAEMRequest()
		if v := got.Header.Get("X-Api-Key"); v != tt.apiKey {
			t.Errorf("%s: X-Api-Key %q; want %q", tt.path, v, tt.apiKey)
		}
	}
	if h.ims.OAuthRequests() != 1 || h.ims.Exchanges() != 0 {
		t.Errorf("IMS: %d OAuth requests, %d JWT exchanges; want 1 and 0", h.ims.OAuthRequests(), h.ims.Exchanges())
	}
	if strings.Contains(h.logs.String(), "oauth-secret-1") {
		t.Error("the client secret appears in the logs")
	}
}

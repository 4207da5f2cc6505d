package ims

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
	"github.com/rs/zerolog"
)

// devTokenAt builds an IMS-like access token created at created and valid
// for lifetime, as the AEM Developer Console hands out (spec §2: ms strings).
func devTokenAt(created time.Time, lifetime time.Duration) string {
	return fakeAccessToken(fmt.Sprintf(`{"type":"access_token","client_id":"dev-console-prod","created_at":"%d","expires_in":"%d"}`,
		created.UnixMilli(), lifetime.Milliseconds()))
}

// devTokenJSON renders a local development token download.
func devTokenJSON(t testing.TB, token string) []byte {
	t.Helper()
	data, err := json.Marshal(map[string]any{"ok": true, "statusCode": 200, "accessToken": token})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// oauthClient is an OAuth server-to-server credential for tests.
type oauthClient struct {
	name, id, secret string
	scopes           []string
}

func newOAuthClient(name string) oauthClient {
	return oauthClient{
		name:   name,
		id:     "oauth-client-" + strings.ReplaceAll(strings.ToLower(name), " ", "-"),
		secret: "p8e-oauth-secret-" + strings.ReplaceAll(strings.ToLower(name), " ", "") + "-4f2a9c",
		scopes: []string{"AdobeID", "openid", "aem.folders"},
	}
}

// workspaceJSON renders an Adobe Developer Console workspace download with
// the given OAuth credentials plus one API-key credential.
func workspaceJSON(t testing.TB, org string, clients ...oauthClient) []byte {
	t.Helper()
	creds := []any{map[string]any{"id": "1001", "name": "Browser key", "integration_type": "apikey", "api_key": map[string]any{"client_id": "browser-key"}}}
	for i, c := range clients {
		creds = append(creds, map[string]any{
			"id": fmt.Sprint(2000 + i), "name": c.name, "integration_type": "oauth_server_to_server",
			"oauth_server_to_server": map[string]any{
				"client_id": c.id, "client_secrets": []string{c.secret, "p8e-second-secret-unused"},
				"technical_account_email": "x@techacct.adobe.com", "technical_account_id": "X@techacct.adobe.com",
				"scopes": c.scopes,
			},
		})
	}
	data, err := json.MarshalIndent(map[string]any{
		"project": map[string]any{
			"id": "4566206088345", "name": "aemproxy", "title": "aemproxy",
			"org":       map[string]any{"id": "123", "name": "Org", "ims_org_id": org},
			"workspace": map[string]any{"id": "4566206088346", "name": "Production", "details": map[string]any{"credentials": creds}},
		},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func plainOAuthJSON(t testing.TB, c oauthClient) []byte {
	t.Helper()
	data, err := json.Marshal(map[string]any{"client_id": c.id, "client_secret": c.secret, "scopes": c.scopes})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// writeFile writes data to dir/name with mode 0600 and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceFile saves data over path the way editors do: write a temporary
// file next to it and rename it over the old one.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// oauthIMS is a simulated IMS knowing OAuth clients, reached in process
// (no sockets, so it also works inside a synctest bubble) or over httptest.
type oauthIMS struct {
	IMS *sim.IMS
	// URL is the base URL to send exchanges to.
	URL *url.URL
	// Client reaches IMS; nil means over the network to URL.
	Client *http.Client
}

func newOAuthIMS(t testing.TB, o sim.IMSOptions, inProcess bool, clients ...oauthClient) *oauthIMS {
	t.Helper()
	if o.KeyBits == 0 {
		o.KeyBits = 1024
	}
	ims, err := sim.NewIMS(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		ims.RegisterOAuth(c.id, c.secret, c.scopes)
	}
	oi := &oauthIMS{IMS: ims}
	if inProcess {
		oi.URL, _ = url.Parse("http://ims.test")
		oi.Client = &http.Client{Transport: handlerTransport{ims}}
		return oi
	}
	srv := httptest.NewServer(ims)
	t.Cleanup(srv.Close)
	oi.URL, _ = url.Parse(srv.URL)
	return oi
}

func (oi *oauthIMS) exchange() ExchangeOptions {
	return ExchangeOptions{BaseURL: oi.URL, Client: oi.Client}
}

// handlerTransport serves requests with a handler, in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	res := rec.Result()
	res.Request = r
	return res, nil
}

// logSink captures log lines for assertions.
type logSink struct{ syncBuffer }

func (l *logSink) Logger() zerolog.Logger { return zerolog.New(l).Level(zerolog.DebugLevel) }

// Lines returns the captured lines whose message contains substr.
func (l *logSink) Lines(substr string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if msg, _ := m["message"].(string); strings.Contains(msg, substr) {
			out = append(out, m)
		}
	}
	return out
}

// reloads collects OnReload results so that a test can wait for a reload.
type reloads chan error

func (r reloads) hook(err error) { r <- err }

func (r reloads) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
		return nil
	}
}

// basicValue is the Authorization value of user:pass.
func basicValue(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// secretsOf lists the strings that must never be printed.
type secretsOf []string

func (s secretsOf) check(t *testing.T, what, out string) {
	t.Helper()
	for _, sec := range s {
		if sec != "" && strings.Contains(out, sec) {
			t.Errorf("%s contains a secret (%.12s…): %.300q", what, sec, out)
		}
	}
}

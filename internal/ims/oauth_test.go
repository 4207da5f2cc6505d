package ims

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
	"github.com/rs/zerolog"
)

func TestParseOAuthCredentials(t *testing.T) {
	proxy, other := newOAuthClient("Proxy"), newOAuthClient("Other Integration")
	tests := []struct {
		name     string
		data     []byte
		credName string
		want     OAuthCredentials
	}{
		{
			name: "workspace with one credential",
			data: workspaceJSON(t, "ORG1@AdobeOrg", proxy),
			want: OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: proxy.id, ClientSecret: Secret(proxy.secret), Scopes: proxy.scopes, Org: "ORG1@AdobeOrg", Name: "Proxy"},
		},
		{
			name:     "workspace with several, chosen by name",
			data:     workspaceJSON(t, "ORG1@AdobeOrg", proxy, other),
			credName: "Other Integration",
			want:     OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: other.id, ClientSecret: Secret(other.secret), Scopes: other.scopes, Org: "ORG1@AdobeOrg", Name: "Other Integration"},
		},
		{
			name:     "workspace with several, chosen by id",
			data:     workspaceJSON(t, "ORG1@AdobeOrg", proxy, other),
			credName: "2000",
			want:     OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: proxy.id, ClientSecret: Secret(proxy.secret), Scopes: proxy.scopes, Org: "ORG1@AdobeOrg", Name: "Proxy"},
		},
		{
			name: "plain with scope list",
			data: plainOAuthJSON(t, proxy),
			want: OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: proxy.id, ClientSecret: Secret(proxy.secret), Scopes: proxy.scopes},
		},
		{
			name:     "plain with comma string, endpoint and org; name ignored",
			data:     []byte(`{"client_id":"cid","client_secret":"sec","scopes":" AdobeID, openid ,,AdobeID","ims_endpoint":"https://IMS-EU1.adobelogin.com/","org":"O@AdobeOrg"}`),
			credName: "whatever",
			want:     OAuthCredentials{IMSEndpoint: "ims-eu1.adobelogin.com", ClientID: "cid", ClientSecret: "sec", Scopes: []string{"AdobeID", "openid"}, Org: "O@AdobeOrg"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOAuthCredentials(tt.data, tt.credName)
			if err != nil {
				t.Fatalf("ParseOAuthCredentials() error = %v", err)
			}
			if got.IMSEndpoint != tt.want.IMSEndpoint || got.ClientID != tt.want.ClientID || got.ClientSecret != tt.want.ClientSecret ||
				!slices.Equal(got.Scopes, tt.want.Scopes) || got.Org != tt.want.Org || got.Name != tt.want.Name {
				t.Errorf("got %v (secret ok: %v); want %v", got, got.ClientSecret == tt.want.ClientSecret, tt.want)
			}
		})
	}
}

func TestParseOAuthCredentialsProblems(t *testing.T) {
	proxy, other := newOAuthClient("Proxy"), newOAuthClient("Other")
	tests := []struct {
		name     string
		data     string
		credName string
		want     []string
	}{
		{"several without a name", string(workspaceJSON(t, "O", proxy, other)), "", []string{"several oauth_server_to_server credentials", `"Proxy"`, `"Other"`, "choose one by its name"}},
		{"name not found", string(workspaceJSON(t, "O", proxy, other)), "Nope", []string{`no oauth_server_to_server credential named "Nope"`, `"Proxy", "Other"`}},
		{"no OAuth credential", string(workspaceJSON(t, "O")), "", []string{"no credential with integration_type oauth_server_to_server", `"Browser key" ("apikey")`}},
		{"duplicate names", string(workspaceJSON(t, "O", proxy, proxy)), "Proxy", []string{`several oauth_server_to_server credentials are named "Proxy"; choose one by its id instead: "2000", "2001"`}},
		{"client_secrets not a list", `{"project":{"workspace":{"details":{"credentials":[{"name":"a","integration_type":"oauth_server_to_server","oauth_server_to_server":{"client_id":"c","client_secrets":"` + proxy.secret + `","scopes":["x"]}}]}}}}`, "",
			[]string{"client_secrets: not a JSON array of strings"}},
		{"client_secrets missing", `{"project":{"workspace":{"details":{"credentials":[{"name":"a","integration_type":"oauth_server_to_server","oauth_server_to_server":{"client_id":"c","scopes":["x"]}}]}}}}`, "",
			[]string{"client_secrets: missing"}},
		{"credential not an object", `{"project":{"workspace":{"details":{"credentials":[1]}}}}`, "", []string{"credentials[0]: not a JSON object"}},
		{"no workspace", `{"project":{}}`, "", []string{"project.workspace: missing"}},
		{"credentials not an array", `{"project":{"workspace":{"details":{"credentials":{}}}}}`, "", []string{"credentials: not a JSON array"}},
		{"credential body missing", `{"project":{"workspace":{"details":{"credentials":[{"name":"a","integration_type":"oauth_server_to_server"}]}}}}`, "", []string{"credentials[0].oauth_server_to_server: missing"}},
		{"credential fields missing", `{"project":{"workspace":{"details":{"credentials":[{"name":"a","integration_type":"oauth_server_to_server","oauth_server_to_server":{"client_secrets":[" "]}}]}}}}`, "",
			[]string{"oauth_server_to_server.client_id: missing", "client_secrets: empty", "scopes: missing"}},
		{"plain, all missing", `{}`, "", []string{"client_id: missing", "client_secret: missing", "scopes: missing"}},
		{"plain, bad scopes", `{"client_id":"a","client_secret":"b","scopes":["a b"]}`, "", []string{`scopes: entry "a b" contains a space`}},
		{"plain, scopes wrong type", `{"client_id":"a","client_secret":"b","scopes":3}`, "", []string{"scopes: not a JSON array of strings or a comma-separated string"}},
		{"plain, bad endpoint", `{"client_id":"a","client_secret":"b","scopes":"x","ims_endpoint":"ftp://x"}`, "", []string{"ims_endpoint:"}},
		{"not JSON", `{"client_secret": "` + proxy.secret, "", []string{"not valid JSON"}},
		{"array", `[]`, "", []string{"not a JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOAuthCredentials([]byte(tt.data), tt.credName)
			if err == nil {
				t.Fatalf("ParseOAuthCredentials() = %v; want an error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q; want it to contain %q", err, w)
				}
			}
			secretsOf{proxy.secret, other.secret}.check(t, "error", err.Error())
		})
	}
}

func TestOAuthCredentialsNeverPrintSecret(t *testing.T) {
	c := OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: "cid", ClientSecret: "p8e-very-secret-1234", Scopes: []string{"openid"}, Name: "n", Org: "o"}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := zerolog.New(&logs)
	logger.Info().Object("creds", c).Msg("x")
	for name, out := range map[string]string{"String": c.String(), "%#v": fmt.Sprintf("%#v", c), "%+v": fmt.Sprintf("%+v", c), "json": string(js), "zerolog": logs.String()} {
		secretsOf{"p8e-very-secret-1234"}.check(t, name, out)
		if !strings.Contains(out, "cid") {
			t.Errorf("%s = %q; want the client id", name, out)
		}
	}
}

func TestClientCredentialsExchange(t *testing.T) {
	clock := newFakeClock()
	oc := newOAuthClient("Proxy")
	tests := []struct {
		name   string
		opaque bool
	}{
		// An opaque token's expiry comes from expires_in alone: in seconds
		// at /ims/token/v3 (spec §4), not milliseconds as at the JWT exchange.
		{"opaque token, expires_in in seconds", true},
		{"JWT token, expiry from its payload", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oi := newOAuthIMS(t, sim.IMSOptions{Now: clock.Now, OpaqueTokens: tt.opaque}, false, oc)
			creds, err := ParseOAuthCredentials(workspaceJSON(t, "O@AdobeOrg", oc), "")
			if err != nil {
				t.Fatal(err)
			}
			o := oi.exchange()
			o.Now = clock.Now
			x, err := NewClientCredentialsExchange(creds, o)
			if err != nil {
				t.Fatal(err)
			}
			if x.ClientID() != oc.id {
				t.Errorf("ClientID() = %q; want %q", x.ClientID(), oc.id)
			}
			tok, err := x.Token(t.Context())
			if err != nil {
				t.Fatalf("Token() error = %v", err)
			}
			if err := oi.IMS.ValidateAccessToken(tok.AccessToken); err != nil {
				t.Errorf("IMS does not accept the token: %v", err)
			}
			want := clock.Now().Add(24 * time.Hour)
			if tt.opaque {
				want = want.Add(-time.Second) // the simulation reports one second less
			}
			if !tok.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %v; want %v", tok.ExpiresAt, want)
			}
			if oi.IMS.OAuthRequests() != 1 {
				t.Errorf("IMS saw %d OAuth requests; want 1", oi.IMS.OAuthRequests())
			}
		})
	}
}

func TestClientCredentialsExchangeRequest(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now) // records forms
	oc := newOAuthClient("Proxy")
	ti.IMS.RegisterOAuth(oc.id, oc.secret, oc.scopes)
	x, err := NewClientCredentialsExchange(&OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: oc.id, ClientSecret: Secret(oc.secret), Scopes: oc.scopes},
		ExchangeOptions{BaseURL: ti.URL, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	reqs := ti.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests; want 1", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/ims/token/v3" || r.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("request to %s as %s; want /ims/token/v3, urlencoded", r.Path, r.ContentType)
	}
	for k, want := range map[string]string{"grant_type": "client_credentials", "client_id": oc.id, "client_secret": oc.secret, "scope": "AdobeID,openid,aem.folders"} {
		if got := r.Form.Get(k); got != want {
			t.Errorf("form %s = %q; want %q", k, got, want)
		}
	}
}

func TestClientCredentialsExchangeErrors(t *testing.T) {
	clock := newFakeClock()
	oc := newOAuthClient("Proxy")
	oi := newOAuthIMS(t, sim.IMSOptions{Now: clock.Now}, false, oc)
	tests := []struct {
		name   string
		edit   func(c *OAuthCredentials)
		status int
		hint   string
	}{
		{"wrong secret", func(c *OAuthCredentials) { c.ClientSecret += "x" }, 401, "check client_id and client_secret of the OAuth server-to-server credential"},
		{"unknown client", func(c *OAuthCredentials) { c.ClientID += "x" }, 400, "IMS does not know this client: check client_id"},
		{"scope not granted", func(c *OAuthCredentials) { c.Scopes = append(c.Scopes, "aem.assets") }, 400, "not all granted to this OAuth credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: oc.id, ClientSecret: Secret(oc.secret), Scopes: slices.Clone(oc.scopes)}
			tt.edit(c)
			o := oi.exchange()
			o.Now = clock.Now
			x, err := NewClientCredentialsExchange(c, o)
			if err != nil {
				t.Fatal(err)
			}
			_, err = x.Token(t.Context())
			var e *Error
			if !errors.As(err, &e) || e.StatusCode != tt.status || !IsPermanent(err) {
				t.Fatalf("Token() error = %v; want a permanent *Error with status %d", err, tt.status)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("error %q; want hint %q", err, tt.hint)
			}
			secretsOf{oc.secret, c.ClientSecret.Reveal()}.check(t, "error", err.Error())
		})
	}
}

func TestNewClientCredentialsExchangeRejects(t *testing.T) {
	for name, c := range map[string]*OAuthCredentials{
		"nil":          nil,
		"empty":        {},
		"bad endpoint": {IMSEndpoint: "a/b", ClientID: "a", ClientSecret: "b", Scopes: []string{"x"}},
		"bad scope":    {IMSEndpoint: DefaultIMSEndpoint, ClientID: "a", ClientSecret: "b", Scopes: []string{"a,b"}},
	} {
		if _, err := NewClientCredentialsExchange(c, ExchangeOptions{}); err == nil || !strings.HasPrefix(err.Error(), "new OAuth client-credentials exchange: ") {
			t.Errorf("%s: error = %v; want one saying what was attempted", name, err)
		}
	}
}

// TestOAuthCacheRefreshAndRotation runs the OAuth exchange under a Cache, as
// the JWT exchange runs: one exchange for many callers, a refresh at the
// refresh point, and a new token after AEM rejects one.
func TestOAuthCacheRefreshAndRotation(t *testing.T) {
	clock := newFakeClock()
	oc := newOAuthClient("Proxy")
	oi := newOAuthIMS(t, sim.IMSOptions{Now: clock.Now}, false, oc)
	o := oi.exchange()
	o.Now = clock.Now
	x, err := NewClientCredentialsExchange(&OAuthCredentials{IMSEndpoint: DefaultIMSEndpoint, ClientID: oc.id, ClientSecret: Secret(oc.secret), Scopes: oc.scopes}, o)
	if err != nil {
		t.Fatal(err)
	}
	fetched := make(fetchWaiter, 10)
	c := newTestCache(x, clock, CacheOptions{OnFetch: fetched.hook})
	first := mustToken(t, c)
	fetched.wait(t)
	for range 10 {
		if tok := mustToken(t, c); tok.AccessToken != first.AccessToken {
			t.Fatal("fresh token replaced")
		}
	}
	if n := oi.IMS.OAuthRequests(); n != 1 {
		t.Fatalf("%d exchanges for a fresh token; want 1", n)
	}
	clock.Advance(17 * time.Hour) // past 2/3 of 24 h
	if tok := mustToken(t, c); tok.AccessToken != first.AccessToken {
		t.Error("stale token not served while refreshing")
	}
	if err := fetched.wait(t); err != nil {
		t.Fatal(err)
	}
	second := mustToken(t, c)
	if second.AccessToken == first.AccessToken || !second.ExpiresAt.Equal(clock.Now().Add(24*time.Hour)) {
		t.Errorf("after refresh: same token %v or expiry %v; want a new one until %v", second.AccessToken == first.AccessToken, second.ExpiresAt, clock.Now().Add(24*time.Hour))
	}
	oi.IMS.Revoke(second.AccessToken)
	if !c.Invalidate(second.AccessToken) {
		t.Fatal("Invalidate = false")
	}
	fetched.wait(t)
	if third := mustToken(t, c); third.AccessToken == second.AccessToken || oi.IMS.ValidateAccessToken(third.AccessToken) != nil {
		t.Error("no new valid token after Invalidate")
	}
	if n := oi.IMS.OAuthRequests(); n != 3 {
		t.Errorf("%d exchanges; want 3", n)
	}
}

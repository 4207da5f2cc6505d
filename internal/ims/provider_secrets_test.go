package ims

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// TestProviderNoSecretInLogsOrErrors drives every kind of credential through
// successes, refusals, bad reloads, expiry and rejection, and searches every
// log line, error and printed value for the client secrets, the private key,
// the password (and its Basic encoding) and every token.
func TestProviderNoSecretInLogsOrErrors(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	oc := newOAuthClient("Proxy")
	ti.IMS.RegisterOAuth(oc.id, oc.secret, oc.scopes)
	var logs logSink
	logger := logs.Logger()
	var printed []string
	var tokens []string
	record := func(tok Token, err error) {
		if err != nil {
			printed = append(printed, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		}
		if !tok.IsZero() {
			tokens = append(tokens, tok.AccessToken)
			printed = append(printed, fmt.Sprintf("%v %+v %#v", tok, tok, tok))
			logger.Info().Object("token", tok).Msg("token")
		}
	}
	dir := t.TempDir()
	newProvider := func(o ProviderOptions) *Provider {
		o.Exchange.BaseURL, o.Exchange.Now = ti.URL, clock.Now
		o.Logger, o.Cache.Logger, o.Cache.Name = logger, logger, "author"
		p, err := NewProvider(o)
		if err != nil {
			record(Token{}, err)
			return nil
		}
		return p
	}
	use := func(p *Provider) {
		record(p.Token(t.Context()))
		record(p.Once(t.Context()))
		if len(tokens) > 0 {
			p.Invalidate(tokens[len(tokens)-1])
		}
		record(p.Token(t.Context()))
		printed = append(printed, fmt.Sprintf("%+v", p.State()), fmt.Sprintf("%+v", p))
	}

	// Service credentials, then a reload to a broken copy and to OAuth
	// credentials with a wrong secret.
	service, _ := ti.Creds.JSON(sim.JSONOptions{})
	servicePath := writeFile(t, dir, "service.json", service)
	p := newProvider(ProviderOptions{Path: servicePath})
	use(p)
	replaceFile(t, servicePath, []byte(strings.Replace(string(service), `"org"`, `"orgx"`, 1)))
	record(Token{}, p.Reload())
	wrong := oc
	wrong.secret += "-wrong"
	replaceFile(t, servicePath, plainOAuthJSON(t, wrong))
	record(Token{}, p.Reload())
	use(p)
	record(Token{}, newProviderErr(ProviderOptions{Path: servicePath, Kind: KindServiceCredentials}))

	// OAuth.
	oauthPath := writeFile(t, dir, "oauth.json", workspaceJSON(t, "O@AdobeOrg", oc))
	use(newProvider(ProviderOptions{Path: oauthPath}))
	record(Token{}, newProviderErr(ProviderOptions{Path: oauthPath, OAuthCredentialName: "nope"}))

	// Basic, from a file and given directly; a file with a bad password.
	const password = "sdk-pa55word-77"
	basicPath := writeFile(t, dir, "basic.json", []byte(`{"username":"admin","password":"`+password+`"}`))
	use(newProvider(ProviderOptions{Path: basicPath}))
	use(newProvider(ProviderOptions{Basic: &BasicCredentials{Username: "admin", Password: password}}))
	replaceFile(t, basicPath, []byte(`{"username":"admin","password":"`+password+`\n"}`))
	record(Token{}, newProviderErr(ProviderOptions{Path: basicPath}))

	// Development tokens: one that expires, one whose expiry is unknown and
	// that AEM rejects, one given directly that is malformed.
	devTok := devTokenAt(clock.Now().Add(-23*time.Hour), 24*time.Hour)
	opaque := "opaque-dev-token-0123456789"
	devPath := writeFile(t, dir, "dev.json", devTokenJSON(t, devTok))
	dp := newProvider(ProviderOptions{Path: devPath})
	use(dp)
	clock.Advance(2 * time.Hour)
	use(dp)
	replaceFile(t, devPath, []byte(devTokenAt(clock.Now().Add(-48*time.Hour), time.Hour)))
	record(Token{}, dp.Reload())
	replaceFile(t, devPath, []byte(opaque))
	record(Token{}, dp.Reload())
	use(dp)
	record(Token{}, newProviderErr(ProviderOptions{Token: Secret(opaque + " x")}))

	if len(tokens) < 8 || len(printed) < 40 {
		t.Fatalf("scenario produced %d tokens and %d outputs; want more", len(tokens), len(printed))
	}
	keyPEM, _ := ti.Creds.PrivateKeyPEM(sim.PKCS1)
	keyLines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	secrets := secretsOf{oc.secret, wrong.secret, password, basicValue("admin", password), devTok, opaque}
	for _, tok := range tokens {
		secrets = append(secrets, tok)
		if parts := strings.Split(tok, "."); len(parts) == 3 {
			secrets = append(secrets, parts[2])
		}
	}
	for _, out := range append(printed, logs.String()) {
		assertNoSecret(t, out, ti.Creds.ClientSecret, keyLines)
		secrets.check(t, "output", out)
	}
	// The scenario did reach the interesting lines.
	for _, want := range []string{"credentials file reloaded", "keeping the current credentials", "AEM rejected the local development token", `"ims_error":"invalid_client"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q", want)
		}
	}
}

func newProviderErr(o ProviderOptions) error {
	_, err := NewProvider(o)
	return err
}

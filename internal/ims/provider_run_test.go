package ims

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// Inside a synctest bubble time.Now and timers are virtual; these tests use
// no sockets and no fsnotify watch (NoWatch), whose blocking is not virtual.

// runProvider starts p.Run and returns a function that stops it and checks
// that it returned.
func runProvider(t *testing.T, p *Provider) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()
	synctest.Wait()
	return func() {
		t.Helper()
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after its context ended")
		}
	}
}

func TestRunWarnsBeforeDevTokenExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logSink
		tok := devTokenAt(time.Now(), 2*time.Hour)
		p := mustProvider(t, ProviderOptions{Token: Secret(tok), Logger: logs.Logger(), Cache: CacheOptions{Name: "author"}})
		stop := runProvider(t, p)
		defer stop()

		counts := func() (hour, tenMin, expired int) {
			return len(logs.Lines("expires in 1h0m0s")), len(logs.Lines("expires in 10m0s")), len(logs.Lines("local development token expired at"))
		}
		steps := []struct {
			sleep               time.Duration
			hour, tenMin, error int
		}{
			{0, 0, 0, 0},
			{time.Hour - time.Second, 0, 0, 0},
			{time.Second, 1, 0, 0},
			{50*time.Minute - time.Second, 1, 0, 0},
			{time.Second, 1, 1, 0},
			{10*time.Minute - time.Second, 1, 1, 0},
			{time.Second, 1, 1, 1},
			{48 * time.Hour, 1, 1, 1},
		}
		for i, st := range steps {
			time.Sleep(st.sleep)
			synctest.Wait()
			if h, m, e := counts(); h != st.hour || m != st.tenMin || e != st.error {
				t.Fatalf("step %d (%v left): %d, %d, %d notices; want %d, %d, %d\n%s", i, time.Until(p.State().TokenExpiresAt), h, m, e, st.hour, st.tenMin, st.error, logs.String())
			}
		}
		warn := logs.Lines("expires in 10m0s")[0]
		if warn["level"] != "warn" || !strings.Contains(warn["message"].(string), "Get Local Development Token") || warn["token_expires_at"] == nil {
			t.Errorf("warning %v; want level warn with the how-to and token_expires_at", warn)
		}
		if e := logs.Lines("local development token expired at")[0]; e["level"] != "error" || !strings.Contains(e["message"].(string), "AEMPROXY_TOKEN") {
			t.Errorf("expiry line %v; want level error naming where the token came from", e)
		}
		_, err := p.Token(t.Context())
		var ue *UnavailableError
		if !errors.As(err, &ue) || p.State().Valid {
			t.Errorf("after expiry: Token() error %v, State().Valid %v; want an *UnavailableError and false", err, p.State().Valid)
		}
		secretsOf{tok}.check(t, "logs", logs.String())
	})
}

func TestRunWarnsAtOnceForShortLivedDevToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logSink
		p := mustProvider(t, ProviderOptions{Token: Secret(devTokenAt(time.Now().Add(-23*time.Hour-30*time.Minute), 24*time.Hour)), Logger: logs.Logger()})
		stop := runProvider(t, p)
		defer stop()
		if n := len(logs.Lines("expires in 30m0s")); n != 1 {
			t.Fatalf("%d warnings at start with 30 min left; want 1\n%s", n, logs.String())
		}
		time.Sleep(20 * time.Minute)
		synctest.Wait()
		if n, m := len(logs.Lines("expires in 10m0s")), len(logs.Lines("expires in")); n != 1 || m != 2 {
			t.Errorf("%d 10-minute warnings, %d in all; want 1 and 2\n%s", n, m, logs.String())
		}
	})
}

func TestRunChecksCertificateExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		notAfter := time.Now().Add(31 * 24 * time.Hour)
		creds, err := sim.NewCredentials(sim.CredentialOptions{Bits: 1024, NotAfter: notAfter})
		if err != nil {
			t.Fatal(err)
		}
		oi := newOAuthIMS(t, sim.IMSOptions{}, true)
		oi.IMS.Register(creds)
		data, _ := creds.JSON(sim.JSONOptions{})
		var logs logSink
		p := mustProvider(t, ProviderOptions{
			Path: writeFile(t, t.TempDir(), "service.json", data), NoWatch: true, PollInterval: -1,
			Exchange: oi.exchange(), Logger: logs.Logger(),
		})
		stop := runProvider(t, p)
		defer stop()
		if !p.State().Valid || oi.IMS.Exchanges() != 1 {
			t.Fatalf("after start: state valid %v after %d exchanges; want a token from Run's cache", p.State().Valid, oi.IMS.Exchanges())
		}
		warnings := func() int {
			return len(logs.Lines("certificate of the service credentials (integration.publicKey) expires in"))
		}
		expired := func() int {
			return len(logs.Lines("certificate of the service credentials (integration.publicKey) has expired"))
		}

		// 31 days left at start, 30.5 after 12 h: no warning yet; the check
		// at 24 h finds 30 days left and warns; each later check warns again.
		time.Sleep(12 * time.Hour)
		synctest.Wait()
		if warnings() != 0 {
			t.Fatalf("warned with more than 30 days left:\n%s", logs.String())
		}
		time.Sleep(12 * time.Hour)
		synctest.Wait()
		if warnings() != 1 {
			t.Fatalf("%d warnings with 30 days left; want 1\n%s", warnings(), logs.String())
		}
		w := logs.Lines("expires in 30 days")
		if len(w) != 1 || w[0]["level"] != "warn" || w[0]["days_left"] != 30.0 || w[0]["certificate_not_after"] == nil {
			t.Errorf("warning %v; want level warn with days_left 30 and certificate_not_after", w)
		}
		time.Sleep(36 * time.Hour)
		synctest.Wait()
		if warnings() != 4 || expired() != 0 {
			t.Errorf("%d warnings, %d errors after 2.5 days; want 4 and 0", warnings(), expired())
		}
		time.Sleep(29 * 24 * time.Hour)
		synctest.Wait()
		if expired() == 0 {
			t.Fatalf("no error after the certificate expired:\n%.2000s", logs.String())
		}
		e := logs.Lines("has expired")[0]
		if e["level"] != "error" || !strings.Contains(e["message"].(string), "create new service credentials in the AEM Developer Console") {
			t.Errorf("error line %v", e)
		}
		if !p.State().CertificateNotAfter.Equal(creds.Cert.NotAfter) {
			t.Errorf("State().CertificateNotAfter = %v; want %v", p.State().CertificateNotAfter, creds.Cert.NotAfter)
		}
	})
}

func TestRunPollsWithoutWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tok1, tok2 := devTokenAt(time.Now(), 24*time.Hour), devTokenAt(time.Now().Add(time.Minute), 24*time.Hour)
		path := writeFile(t, t.TempDir(), "dev.txt", []byte(tok1))
		got := make(reloads, 10)
		p := mustProvider(t, ProviderOptions{Path: path, NoWatch: true, PollInterval: time.Minute, OnReload: got.hook})
		stop := runProvider(t, p)
		defer stop()
		replaceFile(t, path, []byte(tok2))
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if tok, _ := p.Token(t.Context()); tok.AccessToken != tok1 || len(got) != 0 {
			t.Fatal("reloaded before the poll")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if tok, _ := p.Token(t.Context()); tok.AccessToken != tok2 || len(got) != 1 {
			t.Fatalf("after the poll: new token %v, %d reloads; want the new token and 1", tok.AccessToken == tok2, len(got))
		}
	})
}

// TestRunFollowsKindChanges switches a file between a development token and
// service credentials while Run runs: the token cache runs only while an
// exchanged credential is in use.
func TestRunFollowsKindChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		creds, err := sim.NewCredentials(sim.CredentialOptions{Bits: 1024})
		if err != nil {
			t.Fatal(err)
		}
		oi := newOAuthIMS(t, sim.IMSOptions{}, true)
		oi.IMS.Register(creds)
		service, _ := creds.JSON(sim.JSONOptions{})
		dev := devTokenAt(time.Now(), 24*time.Hour)
		path := writeFile(t, t.TempDir(), "creds.json", []byte(dev))
		p := mustProvider(t, ProviderOptions{Path: path, NoWatch: true, Exchange: oi.exchange()})
		stop := runProvider(t, p)
		defer stop()

		replaceFile(t, path, service)
		if err := p.Reload(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if p.Kind() != KindServiceCredentials || oi.IMS.Exchanges() != 1 || !p.State().Valid {
			t.Fatalf("after switching to service credentials: kind %s, %d exchanges, valid %v; want a token fetched by Run", p.Kind(), oi.IMS.Exchanges(), p.State().Valid)
		}
		time.Sleep(17 * time.Hour) // past the refresh point
		synctest.Wait()
		if oi.IMS.Exchanges() != 2 {
			t.Fatalf("%d exchanges after the refresh point; want 2", oi.IMS.Exchanges())
		}
		replaceFile(t, path, devTokenJSON(t, devTokenAt(time.Now(), 24*time.Hour)))
		if err := p.Reload(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(48 * time.Hour)
		synctest.Wait()
		if p.Kind() != KindDevToken || oi.IMS.Exchanges() != 2 {
			t.Errorf("with a development token again: kind %s, %d exchanges; want dev_token and no more exchanges", p.Kind(), oi.IMS.Exchanges())
		}
	})
}

package ops

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/aemproxy/aemproxy/internal/ims"
)

type fakeState struct{ s ims.CacheState }

func (f *fakeState) State() ims.CacheState { return f.s }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestReadiness(t *testing.T) {
	exp := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	author := &fakeState{ims.CacheState{Valid: true, TokenExpiresAt: exp, LastSuccess: exp.Add(-time.Hour)}}
	s := New(Options{Routes: []Route{{Name: "author", Tokens: author}, {Name: "sdk"}}})
	h := s.Handler()

	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: got %d; want 200", code)
	}
	code, body := get(t, h, "/readyz")
	if code != http.StatusOK {
		t.Fatalf("/readyz with a valid token: got %d; want 200 (%s)", code, body)
	}
	var rep Readiness
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "ready" || len(rep.Routes) != 2 || rep.Routes[0].TokenExpiresAt == nil || !rep.Routes[0].TokenExpiresAt.Equal(exp) {
		t.Errorf("got %+v; want ready with author's expiry", rep)
	}

	author.s = ims.CacheState{
		Valid:               false,
		LastError:           errors.New("ims: 401 invalid_client: check the client secret"),
		ConsecutiveFailures: 3,
		NextAttempt:         exp,
	}
	code, body = get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz without a token: got %d; want 503", code)
	}
	if !strings.Contains(body, "invalid_client") || !strings.Contains(body, `"consecutive_failures": 3`) {
		t.Errorf("/readyz body does not say why: %s", body)
	}

	author.s = ims.CacheState{Valid: true, TokenExpiresAt: exp}
	s.SetDraining()
	code, body = get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"draining"`) {
		t.Errorf("/readyz while draining: got %d %s; want 503 draining", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining: got %d; want 200 (the process is alive)", code)
	}
}

func TestTokenMetrics(t *testing.T) {
	exp := time.Unix(1_800_000_000, 0)
	cert := time.Unix(1_900_000_000, 0)
	st := &fakeState{ims.CacheState{Valid: true, TokenExpiresAt: exp, CertificateNotAfter: cert, Exchanges: 5, Failures: 2, ConsecutiveFailures: 1}}
	reg := prometheus.NewRegistry()
	if err := RegisterTokenMetrics(reg, []Route{{Name: "author", Tokens: st}, {Name: "sdk"}}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP aemproxy_certificate_expiry_timestamp_seconds When the service credentials' certificate (publicKey) expires (Unix seconds).
# TYPE aemproxy_certificate_expiry_timestamp_seconds gauge
aemproxy_certificate_expiry_timestamp_seconds{route="author"} 1.9e+09
# HELP aemproxy_token_expiry_timestamp_seconds When the route's current IMS access token expires (Unix seconds).
# TYPE aemproxy_token_expiry_timestamp_seconds gauge
aemproxy_token_expiry_timestamp_seconds{route="author"} 1.8e+09
# HELP aemproxy_token_valid 1 if the route holds a usable IMS access token.
# TYPE aemproxy_token_valid gauge
aemproxy_token_valid{route="author"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"aemproxy_certificate_expiry_timestamp_seconds", "aemproxy_token_expiry_timestamp_seconds", "aemproxy_token_valid"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(reg, "aemproxy_token_refreshes_total"); got != 2 {
		t.Errorf("refresh series: got %d; want success and failure for author only", got)
	}
}

func TestIMSMetricsObserver(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewIMSMetrics(reg)
	obs := m.Observer("author")
	obs(200*time.Millisecond, nil)
	obs(time.Second, &ims.Error{StatusCode: 401, Code: "invalid_client"})
	obs(time.Second, &ims.Error{StatusCode: 503})
	if got := testutil.CollectAndCount(reg, "aemproxy_ims_exchange_duration_seconds"); got != 3 {
		t.Errorf("got %d series; want success, permanent_error and transient_error", got)
	}
}

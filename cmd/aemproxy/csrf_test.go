package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCSRFEndToEnd writes through the proxy to a simulated AEM whose CSRF
// filter refuses writes without a token it issued: with csrf on the route
// they pass, with the token fetched once and sent on each write; without
// it they are refused.
func TestCSRFEndToEnd(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := "csrf off"
		if on {
			name = "csrf on"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "aemproxy.yaml")
			yaml := "routes:\n  - name: author\n"
			if on {
				yaml += "    csrf: true\n"
			}
			if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			h := startHarness(t, harnessOptions{aemCSRF: true, extra: []string{"--config", cfg}})
			h.waitReady(http.StatusOK)

			for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
				req, _ := http.NewRequest(m, h.proxy+"/content/dam/wknd/a.json", strings.NewReader(`{"title":"x"}`))
				req.Header.Set("CSRF-Token", "made-up-by-the-client")
				resp, body := h.do(req)
				want := http.StatusForbidden
				if on {
					want = http.StatusOK
				}
				if resp.StatusCode != want {
					t.Errorf("%s: %d %s; want %d", m, resp.StatusCode, body, want)
				}
			}
			fetches := 0
			for _, r := range h.aem.Requests() {
				if tok := r.Header.Get("CSRF-Token"); tok != "" && strings.Contains(h.logs.String(), tok) {
					t.Errorf("the CSRF token %s sent to AEM appears in the log", tok)
				}
				if r.Path == "/libs/granite/csrf/token.json" {
					fetches++
					if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
						t.Error("token.json was fetched without the route's bearer")
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[on]; fetches != want {
				t.Errorf("token.json fetched %d times; want %d", fetches, want)
			}
		})
	}
}

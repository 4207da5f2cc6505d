package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// rawExchange writes raw to a new connection and reads every response the
// server sends until it closes the connection or stops answering (after
// quiet). It reports the statuses and whether the server closed.
func rawExchange(t *testing.T, addr, raw string) (statuses []int, closed bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for range 4 {
		// Once one response is in, more follow at once or not at all.
		if len(statuses) > 0 {
			conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return statuses, false
			}
			return statuses, true // EOF or reset: the server closed
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		if resp.Close {
			// The server said Connection: close; see that it does.
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err := br.ReadByte()
			return statuses, err != nil && !isTimeout(err)
		}
	}
	return statuses, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestMalformedRequestsOverRawTCP sends what no well-behaved client sends to
// the real program and records what Go's server and the proxy do with it.
// A request that is refused must not reach AEM.
func TestMalformedRequestsOverRawTCP(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)
	addr := strings.TrimPrefix(h.proxy, "http://")
	huge := strings.Repeat("a", 80<<10) // over server.max_header_bytes (64 KiB) plus Go's 4 KiB slack

	tests := []struct {
		name     string
		raw      string
		statuses []int // responses in order
		closed   bool  // the server closes the connection after them
		reached  int   // requests AEM receives
		// aem checks what AEM received when the request is forwarded.
		aem func(t *testing.T, got []sim.Request)
	}{
		{name: "bad request line", raw: "GARBAGE\r\n\r\n", statuses: []int{400}, closed: true},
		{name: "invalid method token", raw: "G(E)T /content/a.json HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []int{400}, closed: true},
		{name: "HTTP/0.9 request line", raw: "GET /content/a.json\r\n\r\n", statuses: []int{400}, closed: true},
		{name: "unsupported HTTP version", raw: "GET /content/a.json HTTP/3.0\r\nHost: x\r\n\r\n", statuses: []int{505}, closed: true},
		{name: "header over max_header_bytes", raw: "GET /content/a.json HTTP/1.1\r\nHost: x\r\nX-Big: " + huge + "\r\n\r\n", statuses: []int{431}, closed: true},
		{name: "invalid header name", raw: "GET /content/a.json HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", statuses: []int{400}, closed: true},
		{name: "bare CR in a header value", raw: "GET /content/a.json HTTP/1.1\r\nHost: x\r\nX-A: one\rInjected: yes\r\n\r\n", statuses: []int{400}, closed: true},
		// Go reads a bare LF as the end of a header line (RFC 9112 2.2
		// allows it), so this is two ordinary headers; neither value
		// carries a line break to AEM.
		{name: "bare LF in a header value", raw: "GET /content/a.json HTTP/1.1\r\nHost: x\r\nX-A: one\nInjected: yes\r\n\r\n", statuses: []int{200}, reached: 1,
			aem: func(t *testing.T, got []sim.Request) {
				if v := got[0].Header.Get("X-A"); v != "one" {
					t.Errorf("AEM got X-A %q; want %q", v, "one")
				}
			}},
		{name: "conflicting Content-Lengths", raw: "POST /content/a.json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", statuses: []int{400}, closed: true},
		// The replay buffer reads the body before AEM is contacted.
		{name: "bad chunk size", raw: "POST /content/a.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", statuses: []int{400}, closed: true},
		{name: "unsupported Transfer-Encoding", raw: "POST /content/a.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", statuses: []int{501}, closed: true},
		// Go lets chunked win and drops Content-Length (RFC 9112 6.3); AEM
		// gets the chunked body's 5 bytes, framed by the proxy's own
		// connection.
		{name: "Content-Length and Transfer-Encoding", raw: "POST /content/a.json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", statuses: []int{200}, reached: 1,
			aem: func(t *testing.T, got []sim.Request) {
				if got[0].BodyBytes != 5 {
					t.Errorf("AEM got %d body bytes; want 5", got[0].BodyBytes)
				}
			}},
		// Chunked wins, so the "smuggled" request is just the next request
		// on the connection: it goes through routing, policy and the access
		// log like any other, and AEM sees the same two requests the proxy
		// saw. Nothing hides inside the first request's body.
		{name: "CL.TE smuggling", raw: "POST /content/a.json HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []int{200, 200}, reached: 2,
			aem: func(t *testing.T, got []sim.Request) {
				if got[0].Method != "POST" || got[0].BodyBytes != 0 || got[1].Method != "GET" || got[1].Path != "/smuggled" {
					t.Errorf("AEM got %s %s (%d bytes), %s %s; want POST with an empty body, then GET /smuggled",
						got[0].Method, got[0].Path, got[0].BodyBytes, got[1].Method, got[1].Path)
				}
			}},
		{name: "absolute form, foreign host", raw: "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", statuses: []int{421}},
		{name: "CONNECT", raw: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", statuses: []int{405}},
		{name: "control: a clean request", raw: "GET /content/a.json HTTP/1.1\r\nHost: x\r\n\r\n", statuses: []int{200}, reached: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.aem.Count()
			statuses, closed := rawExchange(t, addr, tt.raw)
			if !slices.Equal(statuses, tt.statuses) {
				t.Errorf("statuses: got %v; want %v", statuses, tt.statuses)
			}
			if closed != tt.closed {
				t.Errorf("connection closed: got %v; want %v", closed, tt.closed)
			}
			if got := h.aem.Count() - before; got != tt.reached {
				t.Fatalf("requests AEM received: got %d; want %d", got, tt.reached)
			}
			if tt.aem != nil {
				reqs := h.aem.Requests()
				tt.aem(t, reqs[len(reqs)-tt.reached:])
			}
		})
	}
}

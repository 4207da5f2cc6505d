package main

import (
	"strings"
	"testing"
)

func TestEgressProxy(t *testing.T) {
	tests := []struct {
		in         string
		wantURL    string
		wantDirect bool
	}{
		{"", "", false},
		{"direct", "", true},
		{"http://proxy.internal:3128", "http://proxy.internal:3128", false},
	}
	for _, tt := range tests {
		u, direct, err := egressProxy(tt.in)
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		got := ""
		if u != nil {
			got = u.String()
		}
		if got != tt.wantURL || direct != tt.wantDirect {
			t.Errorf("%q: got %q direct=%v; want %q direct=%v", tt.in, got, direct, tt.wantURL, tt.wantDirect)
		}
	}
}

func TestEgressProxyErrorHidesPassword(t *testing.T) {
	_, _, err := egressProxy("http://user:hunter2@proxy internal:3128")
	if err == nil {
		t.Fatal("got nil error for a bad proxy URL")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error reveals the password: %v", err)
	}
}

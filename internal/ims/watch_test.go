package ims

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// These tests use the real file system watch and the real clock: they wait
// for reloads through OnReload, never for a fixed time.

// startRun runs p until the test ends and waits until its watch is set.
func startRun(t *testing.T, p *Provider) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-p.watching:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not start watching within 10s")
	}
}

// k8sSecretVolume lays out a file the way the kubelet mounts a secret:
// dir/name → ..data/name, ..data → ..<timestamp>; update swaps ..data
// atomically to a new timestamped directory and deletes the old one.
func k8sSecretVolume(t *testing.T, dir, name string, data []byte) (path string, update func(data []byte)) {
	t.Helper()
	n := 0
	var current string
	update = func(data []byte) {
		t.Helper()
		n++
		ts := fmt.Sprintf("..2026_11_23_10_%02d_00.%09d", n, 100000000+n)
		must(t, os.Mkdir(filepath.Join(dir, ts), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, ts, name), data, 0o600))
		must(t, os.Symlink(ts, filepath.Join(dir, "..data_tmp")))
		must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
		if current != "" {
			must(t, os.RemoveAll(filepath.Join(dir, current)))
		}
		current = ts
	}
	update(data)
	path = filepath.Join(dir, name)
	must(t, os.Symlink(filepath.Join("..data", name), path))
	return path, update
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRunReloadsChangedFile(t *testing.T) {
	tests := []struct {
		name string
		// setup writes data and returns the path to configure and a
		// function that changes the content.
		setup func(t *testing.T, data []byte) (string, func(data []byte))
	}{
		{"written in place", func(t *testing.T, data []byte) (string, func([]byte)) {
			path := writeFile(t, t.TempDir(), "dev.json", data)
			return path, func(data []byte) { must(t, os.WriteFile(path, data, 0o600)) }
		}},
		{"atomic rename", func(t *testing.T, data []byte) (string, func([]byte)) {
			path := writeFile(t, t.TempDir(), "dev.json", data)
			return path, func(data []byte) { replaceFile(t, path, data) }
		}},
		{"kubernetes secret volume", func(t *testing.T, data []byte) (string, func([]byte)) {
			return k8sSecretVolume(t, t.TempDir(), "credentials.json", data)
		}},
		{"symlink into another directory", func(t *testing.T, data []byte) (string, func([]byte)) {
			target := writeFile(t, t.TempDir(), "real.json", data)
			path := filepath.Join(t.TempDir(), "dev.json")
			must(t, os.Symlink(target, path))
			return path, func(data []byte) { replaceFile(t, target, data) }
		}},
		{"symlink pointed elsewhere", func(t *testing.T, data []byte) (string, func([]byte)) {
			dir, other := t.TempDir(), t.TempDir()
			path := filepath.Join(dir, "dev.json")
			must(t, os.Symlink(writeFile(t, other, "v0.json", data), path))
			n := 0
			return path, func(data []byte) {
				n++
				target := writeFile(t, other, fmt.Sprintf("v%d.json", n), data)
				must(t, os.Symlink(target, path+".new"))
				must(t, os.Rename(path+".new", path))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logSink
			got := make(reloads, 10)
			now := time.Now()
			tokens := []string{devTokenAt(now, 24*time.Hour), devTokenAt(now.Add(time.Second), 24*time.Hour), devTokenAt(now.Add(2*time.Second), 24*time.Hour)}
			path, change := tt.setup(t, devTokenJSON(t, tokens[0]))
			p := mustProvider(t, ProviderOptions{Path: path, ReloadDebounce: 20 * time.Millisecond, PollInterval: -1, Logger: logs.Logger(), OnReload: got.hook})
			startRun(t, p)

			// Twice: the watch must survive the first change (a new inode,
			// a new ..data target, a new symlink target).
			for i, tok := range tokens[1:] {
				change(devTokenJSON(t, tok))
				if err := got.wait(t); err != nil {
					t.Fatalf("change %d: OnReload(%v); want nil\n%s", i+1, err, logs.String())
				}
				if cur, err := p.Token(t.Context()); err != nil || cur.AccessToken != tok {
					t.Fatalf("change %d: Token() = %v; want the new token", i+1, err)
				}
			}
			if n := len(logs.Lines("credentials file reloaded")); n != 2 {
				t.Errorf("%d reload lines; want 2\n%s", n, logs.String())
			}
		})
	}
}

func TestRunKeepsCredentialWhenNewFileIsBad(t *testing.T) {
	var logs logSink
	got := make(reloads, 10)
	now := time.Now()
	good1, good2 := devTokenAt(now, 24*time.Hour), devTokenAt(now.Add(time.Second), 24*time.Hour)
	path := writeFile(t, t.TempDir(), "dev.json", devTokenJSON(t, good1))
	p := mustProvider(t, ProviderOptions{Path: path, ReloadDebounce: 20 * time.Millisecond, PollInterval: -1, Logger: logs.Logger(), OnReload: got.hook})
	startRun(t, p)

	replaceFile(t, path, []byte(`{"accessToken": "`+good2+`", `))
	err := got.wait(t)
	if err == nil || !strings.Contains(err.Error(), "credentials file "+path+": not valid JSON") {
		t.Fatalf("OnReload(%v); want the JSON problem naming the file", err)
	}
	if tok, err := p.Token(t.Context()); err != nil || tok.AccessToken != good1 {
		t.Fatalf("Token() after a bad file = %v; want the old token", err)
	}
	w := logs.Lines("keeping the current credentials")
	if len(w) != 1 || w[0]["level"] != "warn" || w[0]["file"] != path || !strings.Contains(w[0]["error"].(string), "not valid JSON") {
		t.Errorf("warnings %v; want one naming the file and the problem", w)
	}
	secretsOf{good1, good2}.check(t, "logs", logs.String())

	replaceFile(t, path, devTokenJSON(t, good2))
	if err := got.wait(t); err != nil {
		t.Fatalf("OnReload(%v) after fixing the file; want nil", err)
	}
	if tok, _ := p.Token(t.Context()); tok.AccessToken != good2 {
		t.Error("fixed file not used")
	}
}

func TestFileWatcherRelevant(t *testing.T) {
	dir := t.TempDir()
	fw, err := newFileWatcher(filepath.Join(dir, "creds.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer fw.close()
	for name, want := range map[string]bool{
		"creds.json":                          true,
		"..data":                              true,
		"..2026_11_23_10_00_00.000000001":     true,
		"other.json":                          false,
		"creds.json.swp":                      false,
		filepath.Join("sub", "creds.json"):    false,
		filepath.Join("..data", "creds.json"): false,
	} {
		ev := fsnotifyEvent(filepath.Join(dir, name))
		if got := fw.relevant(ev); got != want {
			t.Errorf("relevant(%s) = %v; want %v", name, got, want)
		}
	}
	chmod := fsnotifyEvent(filepath.Join(dir, "creds.json"))
	chmod.Op = chmodOp
	if fw.relevant(chmod) {
		t.Error("a chmod alone is relevant; want not")
	}
}

const chmodOp = fsnotify.Chmod

func fsnotifyEvent(name string) fsnotify.Event { return fsnotify.Event{Name: name, Op: fsnotify.Write} }

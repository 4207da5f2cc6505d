package deploy

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/config"
)

// unitFile is a systemd unit: section → key → values in order (a key may
// repeat; an empty assignment resets the list, as in systemd, but is kept
// as "" so that "CapabilityBoundingSet=" can be seen).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, rel string) unitFile {
	t.Helper()
	f, err := os.Open(repoPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not supported by this test", rel, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not KEY=value in a section: %q", rel, n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unitFile) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// TestSystemdUnit checks the example unit: hardening options present, reload
// by SIGHUP, a stop timeout longer than the drain, and an ExecStart whose
// flags and config file agree with aemproxy (the config's credentials path
// is where LoadCredential= puts the file).
func TestSystemdUnit(t *testing.T) {
	const unitPath = "deploy/systemd/aemproxy.service"
	u := parseUnit(t, unitPath)
	unitName := path.Base(unitPath)
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}

	for key, want := range map[string]string{
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"PrivateDevices":        "yes",
		"CapabilityBoundingSet": "",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
	} {
		if got, ok := u.last("Service", key); !ok || got != want {
			t.Errorf("%s=%s; want %s=%s", key, got, key, want)
		}
	}
	for _, key := range []string{"RestrictAddressFamilies", "RestrictNamespaces", "SystemCallArchitectures", "MemoryDenyWriteExecute", "LockPersonality"} {
		if _, ok := u.last("Service", key); !ok {
			t.Errorf("no %s=", key)
		}
	}
	if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter=%v; want @system-service", svc["SystemCallFilter"])
	}
	dyn, _ := u.last("Service", "DynamicUser")
	user, hasUser := u.last("Service", "User")
	if dyn != "yes" && (!hasUser || user == "root" || user == "0") {
		t.Error("want DynamicUser=yes or User= a dedicated unprivileged user")
	}

	exec, _ := u.last("Service", "ExecStart")
	args := strings.Fields(exec)
	if len(args) == 0 || !path.IsAbs(args[0]) || path.Base(args[0]) != "aemproxy" {
		t.Fatalf("ExecStart=%s: want the absolute path of aemproxy first", exec)
	}
	cli := readCLI(t)
	for _, name := range flagNames(args[1:]) {
		if !cli.serve[name] {
			t.Errorf("ExecStart: aemproxy has no flag --%s", name)
		}
	}

	cfg := config.Default()
	if p, ok := flagValue(args[1:], "config"); ok {
		// The example config ships next to the unit.
		local := filepath.Join(path.Dir(unitPath), path.Base(p))
		data, err := os.ReadFile(repoPath(local))
		if err != nil {
			t.Fatalf("ExecStart names --config %s; want its example at %s: %v", p, local, err)
		}
		if cfg, err = config.Decode(strings.NewReader(string(data))); err != nil {
			t.Fatalf("%s: %v", local, err)
		}
		checked := withFiles(t, cfg)
		if err := checked.Validate(); err != nil {
			t.Errorf("%s does not validate:\n%v", local, err)
		}
	}
	for what, addr := range map[string]string{"listen": cfg.Listen, "admin_listen": cfg.AdminListen} {
		if host, _ := splitHostPort(t, what, addr); host != "127.0.0.1" && host != "::1" && host != "localhost" {
			t.Errorf("%s %s: the host example should stay on loopback", what, addr)
		}
	}

	creds := map[string]bool{}
	for _, lc := range svc["LoadCredential"] {
		id, src, ok := strings.Cut(lc, ":")
		if !ok || !path.IsAbs(src) {
			t.Errorf("LoadCredential=%s: want ID:/absolute/path", lc)
		}
		creds["/run/credentials/"+unitName+"/"+id] = true
	}
	for key, p := range filePaths(cfg) {
		if len(creds) > 0 && strings.HasSuffix(key, ".credentials") && !creds[p] {
			t.Errorf("%s %s: not a file LoadCredential= provides (%v)", key, p, keys(creds))
		}
		if !path.IsAbs(p) {
			t.Errorf("%s %s: want an absolute path", key, p)
		}
	}

	stop, ok := u.last("Service", "TimeoutStopSec")
	if !ok {
		t.Fatal("no TimeoutStopSec=")
	}
	d, err := time.ParseDuration(stop)
	if n, nerr := strconv.Atoi(stop); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil {
		t.Fatalf("TimeoutStopSec=%s: %v", stop, err)
	}
	if need := cfg.ShutdownDelay + cfg.ShutdownTimeout; d <= need {
		t.Errorf("TimeoutStopSec=%s: the drain takes up to %v (shutdown_delay + shutdown_timeout); want more", stop, need)
	}
}

package deploy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/aemproxy/aemproxy/internal/config"
)

const manifestDir = "deploy/kubernetes"

// The parts of the Kubernetes API the tests read. Unknown fields are
// ignored: kubectl apply --dry-run=server is the schema check; these tests
// check that the manifests agree with aemproxy and with each other.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type header struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

// intOrString is a port (number or name), or a count or percentage.
type intOrString struct {
	s     string
	i     int
	isInt bool
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" {
		v.isInt = true
		return n.Decode(&v.i)
	}
	return n.Decode(&v.s)
}

func (v intOrString) String() string {
	if v.isInt {
		return strconv.Itoa(v.i)
	}
	return v.s
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deployment struct {
	Spec struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	EnableServiceLinks            *bool `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []volume    `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string     `yaml:"name"`
		Value     *string    `yaml:"value"`
		ValueFrom *yaml.Node `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	Lifecycle struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec *yaml.Node `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string      `yaml:"name"`
		Items []keyToPath `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string      `yaml:"secretName"`
		DefaultMode *int        `yaml:"defaultMode"`
		Items       []keyToPath `yaml:"items"`
	} `yaml:"secret"`
}

type service struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type hpa struct {
	Spec struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas *int `yaml:"minReplicas"`
		MaxReplicas int  `yaml:"maxReplicas"`
	} `yaml:"spec"`
}

type pdb struct {
	Spec struct {
		MinAvailable   *intOrString  `yaml:"minAvailable"`
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type networkPolicy struct {
	Spec struct {
		PodSelector labelSelector `yaml:"podSelector"`
		PolicyTypes []string      `yaml:"policyTypes"`
		Ingress     []struct {
			From  []yaml.Node `yaml:"from"`
			Ports []struct {
				Port intOrString `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

type kvData struct {
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

func (d kvData) has(key string) bool {
	_, a := d.Data[key]
	_, b := d.StringData[key]
	return a || b
}

type manifest struct {
	header
	file string
	node *yaml.Node
}

func (m manifest) String() string { return m.file + ": " + m.Kind + "/" + m.Metadata.Name }

func (m manifest) decode(t *testing.T, v any) {
	t.Helper()
	if err := m.node.Decode(v); err != nil {
		t.Fatalf("%v: %v", m, err)
	}
}

// loadManifests reads every document of every YAML file in the manifest
// directory.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoPath(manifestDir), "*.y*ml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", manifestDir, err)
	}
	var out []manifest
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(r)
		for i := 0; ; i++ {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if len(n.Content) == 0 || n.Content[0].Tag == "!!null" {
				continue
			}
			m := manifest{file: filepath.Base(f), node: &n}
			m.decode(t, &m.header)
			out = append(out, m)
		}
		r.Close()
	}
	return out
}

// cluster is the manifests, decoded, with aemproxy's config from the
// ConfigMap the Deployment mounts.
type cluster struct {
	all        []manifest
	deployment deployment
	deployName string
	pod        *podSpec
	c          *container
	configMaps map[string]kvData
	secrets    map[string]kvData
	services   []service
	hpas       []hpa
	pdbs       []pdb
	netpols    []networkPolicy
	image      image
}

func loadCluster(t *testing.T) *cluster {
	t.Helper()
	cl := &cluster{all: loadManifests(t), configMaps: map[string]kvData{}, secrets: map[string]kvData{}}
	deployments := 0
	for _, m := range cl.all {
		switch m.Kind {
		case "Deployment":
			deployments++
			m.decode(t, &cl.deployment)
			cl.deployName = m.Metadata.Name
		case "ConfigMap":
			var d kvData
			m.decode(t, &d)
			cl.configMaps[m.Metadata.Name] = d
		case "Secret":
			var d kvData
			m.decode(t, &d)
			cl.secrets[m.Metadata.Name] = d
		case "Service":
			var s service
			m.decode(t, &s)
			cl.services = append(cl.services, s)
		case "HorizontalPodAutoscaler":
			var h hpa
			m.decode(t, &h)
			cl.hpas = append(cl.hpas, h)
		case "PodDisruptionBudget":
			var p pdb
			m.decode(t, &p)
			cl.pdbs = append(cl.pdbs, p)
		case "NetworkPolicy":
			var p networkPolicy
			m.decode(t, &p)
			cl.netpols = append(cl.netpols, p)
		}
	}
	if deployments != 1 {
		t.Fatalf("want one Deployment in %s, found %d", manifestDir, deployments)
	}
	cl.pod = &cl.deployment.Spec.Template.Spec
	for i := range cl.pod.Containers {
		if strings.Contains(cl.pod.Containers[i].Image, "aemproxy") {
			cl.c = &cl.pod.Containers[i]
		}
	}
	if cl.c == nil {
		t.Fatal("the Deployment has no aemproxy container")
	}
	cl.image = finalImage(t, parseDockerfile(t))
	return cl
}

// setting is the value aemproxy ends up with for a flag: the container's
// argument, else its environment, else the image's environment, else the
// config file's value (fromFile).
func (cl *cluster) setting(t *testing.T, flag, fromFile string) string {
	t.Helper()
	if v, ok := flagValue(cl.c.Args, flag); ok {
		return v
	}
	env := "AEMPROXY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	for _, e := range cl.c.Env {
		if e.Name != env {
			continue
		}
		if e.ValueFrom != nil {
			t.Fatalf("container env %s comes from valueFrom: the test cannot tell its value", env)
		}
		if e.Value != nil && *e.Value != "" {
			return *e.Value
		}
		return fromFile // set to "": the file decides
	}
	if v := cl.image.env[env]; v != "" {
		return v
	}
	return fromFile
}

// mountOf returns the volume mounted at the deepest mountPath holding p,
// and p relative to that mount.
func (cl *cluster) mountOf(p string) (*volume, string, string) {
	best := ""
	var vol *volume
	for _, vm := range cl.c.VolumeMounts {
		mp := path.Clean(vm.MountPath)
		if strings.HasPrefix(p, mp+"/") && len(mp) > len(best) {
			for i := range cl.pod.Volumes {
				if cl.pod.Volumes[i].Name == vm.Name {
					best, vol = mp, &cl.pod.Volumes[i]
				}
			}
		}
	}
	if vol == nil {
		return nil, "", ""
	}
	return vol, best, strings.TrimPrefix(p, best+"/")
}

// itemKey maps a file name in a configMap or secret volume to its key.
func itemKey(items []keyToPath, rel string) (string, bool) {
	if items == nil {
		return rel, true
	}
	for _, it := range items {
		if it.Path == rel {
			return it.Key, true
		}
	}
	return "", false
}

// aemproxyConfig returns the config file the container is started with,
// read from the ConfigMap it is mounted from, and its path.
func (cl *cluster) aemproxyConfig(t *testing.T) (config.Config, string) {
	t.Helper()
	p := cl.setting(t, "config", "")
	if p == "" {
		t.Fatal("the container gets no --config (or AEMPROXY_CONFIG)")
	}
	vol, mp, rel := cl.mountOf(p)
	if vol == nil || vol.ConfigMap == nil {
		t.Fatalf("--config %s is not in a mounted ConfigMap volume", p)
	}
	key, ok := itemKey(vol.ConfigMap.Items, rel)
	cm, found := cl.configMaps[vol.ConfigMap.Name]
	if !found {
		t.Fatalf("volume %s: no ConfigMap %q in %s", vol.Name, vol.ConfigMap.Name, manifestDir)
	}
	data, has := cm.Data[key]
	if !ok || !has {
		t.Fatalf("--config %s: ConfigMap %s (mounted at %s) has no key %q", p, vol.ConfigMap.Name, mp, rel)
	}
	cfg, err := config.Decode(strings.NewReader(data))
	if err != nil {
		t.Fatalf("ConfigMap %s key %s is not a valid aemproxy config:\n%v", vol.ConfigMap.Name, key, err)
	}
	return cfg, p
}

func (cl *cluster) containerPort(t *testing.T, port intOrString) int {
	t.Helper()
	if port.isInt {
		return port.i
	}
	for _, p := range cl.c.Ports {
		if p.Name == port.s {
			return p.ContainerPort
		}
	}
	t.Errorf("port %q: the container has no port of that name", port.s)
	return -1
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesManifestsParse checks every document is a named object,
// names are unique, and the kustomization lists every manifest but the
// examples.
func TestKubernetesManifestsParse(t *testing.T) {
	all := loadManifests(t)
	seen := map[string]bool{}
	files := map[string]bool{}
	var resources []string
	for _, m := range all {
		files[m.file] = true
		if m.APIVersion == "" || m.Kind == "" {
			t.Errorf("%v: no apiVersion or kind", m)
		}
		if m.Kind == "Kustomization" {
			var k struct {
				Resources []string `yaml:"resources"`
			}
			m.decode(t, &k)
			resources = k.Resources
			continue
		}
		if m.Metadata.Name == "" {
			t.Errorf("%v: no metadata.name", m)
		}
		if seen[m.Kind+"/"+m.Metadata.Name] {
			t.Errorf("%v: defined twice", m)
		}
		seen[m.Kind+"/"+m.Metadata.Name] = true
	}
	if resources == nil {
		t.Fatal("no kustomization.yaml with resources")
	}
	for _, r := range resources {
		if _, err := os.Stat(filepath.Join(repoPath(manifestDir), r)); err != nil {
			t.Errorf("kustomization.yaml: resource %s: %v", r, err)
		}
		if strings.Contains(r, ".example.") {
			t.Errorf("kustomization.yaml lists %s: examples hold placeholders that would overwrite real objects", r)
		}
	}
	for f := range files {
		if f != "kustomization.yaml" && !strings.Contains(f, ".example.") && !slices.Contains(resources, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
}

// TestKubernetesDeployment checks the Deployment against aemproxy and its
// config: listen addresses and ports, probes, drain timing, volumes,
// security settings.
func TestKubernetesDeployment(t *testing.T) {
	cl := loadCluster(t)
	cfg, cfgPath := cl.aemproxyConfig(t)
	cli := readCLI(t)
	d := cl.deployment

	t.Run("config", func(t *testing.T) {
		checked := withFiles(t, cfg)
		if err := checked.Validate(); err != nil {
			t.Errorf("the ConfigMap's config does not validate:\n%v", err)
		}
		if len(cl.c.Command) > 0 && !slices.Equal(cl.c.Command, cl.image.entrypoint) {
			t.Errorf("command %q replaces the image's entrypoint %q", cl.c.Command, cl.image.entrypoint)
		}
		for _, name := range flagNames(cl.c.Args) {
			if !cli.serve[name] {
				t.Errorf("args: aemproxy has no flag --%s", name)
			}
		}
		for _, e := range cl.c.Env {
			if strings.HasPrefix(e.Name, "AEMPROXY_") && !cli.env[e.Name] {
				t.Errorf("env: aemproxy reads no %s", e.Name)
			}
		}
	})

	t.Run("listeners and ports", func(t *testing.T) {
		listen := cl.setting(t, "listen", cfg.Listen)
		admin := cl.setting(t, "admin-listen", cfg.AdminListen)
		addrs := map[string]string{"listen": listen, "admin_listen": admin}
		for i, r := range cfg.Routes {
			if r.Listen != "" {
				addrs[fmt.Sprintf("routes[%d].listen", i)] = r.Listen
			}
		}
		want := map[int]string{}
		for what, addr := range addrs {
			host, port := splitHostPort(t, what, addr)
			if !isUnspecified(host) {
				t.Errorf("%s is %s in effect: in a pod it must listen on all interfaces (0.0.0.0) to be reachable", what, addr)
			}
			want[port] = what
		}
		got := map[int]bool{}
		for _, p := range cl.c.Ports {
			got[p.ContainerPort] = true
			if _, ok := want[p.ContainerPort]; !ok {
				t.Errorf("containerPort %d (%s): aemproxy does not listen there (listeners: %v)", p.ContainerPort, p.Name, addrs)
			}
		}
		for port, what := range want {
			if !got[port] {
				t.Errorf("%s listens on port %d, but the container declares no such port", what, port)
			}
		}
		_, adminPort := splitHostPort(t, "admin", admin)
		_, proxyPort := splitHostPort(t, "listen", listen)
		ann := d.Spec.Template.Metadata.Annotations
		if p, ok := ann["prometheus.io/port"]; ok && p != strconv.Itoa(adminPort) {
			t.Errorf("annotation prometheus.io/port %s; /metrics is on the admin port %d", p, adminPort)
		}
		if p, ok := ann["prometheus.io/path"]; ok && !adminPaths(t)[p] {
			t.Errorf("annotation prometheus.io/path %s: the admin server has no such path", p)
		}

		served := false
		for _, s := range cl.services {
			if !selects(s.Spec.Selector, d.Spec.Template.Metadata.Labels) {
				t.Errorf("Service selector %v does not select the Deployment's pods", s.Spec.Selector)
			}
			for _, p := range s.Spec.Ports {
				target := p.TargetPort
				if target.String() == "" || target.String() == "0" {
					target = intOrString{i: p.Port, isInt: true}
				}
				tp := cl.containerPort(t, target)
				if _, ok := want[tp]; !ok {
					t.Errorf("Service port %s targets %d, where aemproxy does not listen", p.Name, tp)
				}
				served = served || tp == proxyPort
			}
		}
		if !served {
			t.Errorf("no Service port targets the proxy port %d", proxyPort)
		}
	})

	t.Run("probes", func(t *testing.T) {
		paths := adminPaths(t)
		_, adminPort := splitHostPort(t, "admin", cl.setting(t, "admin-listen", cfg.AdminListen))
		for _, p := range []struct {
			name string
			pr   *probe
			path string
		}{{"livenessProbe", cl.c.LivenessProbe, "/healthz"}, {"readinessProbe", cl.c.ReadinessProbe, "/readyz"}} {
			switch {
			case p.pr == nil || p.pr.HTTPGet == nil:
				t.Errorf("%s: want an httpGet probe of %s", p.name, p.path)
			case p.pr.HTTPGet.Path != p.path:
				t.Errorf("%s path %s; want %s", p.name, p.pr.HTTPGet.Path, p.path)
			case !paths[p.pr.HTTPGet.Path]:
				t.Errorf("%s path %s: internal/ops serves no such path (it serves %v)", p.name, p.pr.HTTPGet.Path, keys(paths))
			case cl.containerPort(t, p.pr.HTTPGet.Port) != adminPort:
				t.Errorf("%s port %v; want the admin port %d", p.name, p.pr.HTTPGet.Port, adminPort)
			}
		}
	})

	t.Run("drain", func(t *testing.T) {
		grace := 30 // Kubernetes' default
		if g := cl.pod.TerminationGracePeriodSeconds; g != nil {
			grace = *g
		}
		preStop := 0
		if ps := cl.c.Lifecycle.PreStop; ps != nil {
			switch {
			case ps.Sleep != nil:
				preStop = ps.Sleep.Seconds
			case ps.Exec != nil:
				t.Error("preStop exec: the image has no shell or sleep; use shutdown_delay (or a preStop sleep action)")
			}
		}
		need := preStop + int(cfg.ShutdownDelay.Seconds()+cfg.ShutdownTimeout.Seconds())
		if grace <= need {
			t.Errorf("terminationGracePeriodSeconds %d: preStop (%ds) + shutdown_delay (%v) + shutdown_timeout (%v) need more than %ds, or Kubernetes kills aemproxy mid-drain", grace, preStop, cfg.ShutdownDelay, cfg.ShutdownTimeout, need)
		}
		if cfg.ShutdownDelay <= 0 && preStop <= 0 {
			t.Error("shutdown_delay is 0 and there is no preStop sleep: the proxy stops accepting connections before every node and load balancer has dropped the endpoint")
		}
	})

	t.Run("volumes", func(t *testing.T) {
		for _, vm := range cl.c.VolumeMounts {
			if vm.SubPath != "" {
				t.Errorf("volumeMount %s uses subPath %s: a subPath mount never sees Secret or ConfigMap updates; mount the whole volume", vm.Name, vm.SubPath)
			}
			if !vm.ReadOnly {
				t.Errorf("volumeMount %s: want readOnly", vm.Name)
			}
		}
		files := filePaths(cfg)
		for key, p := range files {
			if !path.IsAbs(p) {
				t.Errorf("%s %s: want an absolute path (relative paths are taken relative to %s)", key, p, path.Dir(cfgPath))
				continue
			}
			vol, mp, rel := cl.mountOf(p)
			switch {
			case vol == nil:
				t.Errorf("%s %s is in no mounted volume", key, p)
			case strings.HasSuffix(key, ".credentials") || strings.HasSuffix(key, ".password_file"):
				if vol.Secret == nil {
					t.Errorf("%s %s: want it in a Secret volume, not %s", key, p, vol.Name)
					continue
				}
				k, ok := itemKey(vol.Secret.Items, rel)
				sec, found := cl.secrets[vol.Secret.SecretName]
				switch {
				case !found:
					t.Errorf("volume %s: no Secret (or Secret example) named %s in %s", vol.Name, vol.Secret.SecretName, manifestDir)
				case !ok || !sec.has(k):
					t.Errorf("%s %s: Secret %s (mounted at %s) has no key %q", key, p, vol.Secret.SecretName, mp, rel)
				}
			}
		}
		for _, v := range cl.pod.Volumes {
			if v.Secret == nil {
				continue
			}
			mode := 0o644 // Kubernetes' default
			if v.Secret.DefaultMode != nil {
				mode = *v.Secret.DefaultMode
			}
			if mode&0o007 != 0 {
				t.Errorf("secret volume %s: defaultMode %#o lets others read the credentials", v.Name, mode)
			}
			if mode&0o070 != 0 && cl.pod.SecurityContext.FSGroup == nil {
				t.Errorf("secret volume %s: files belong to root; set fsGroup so that the non-root user can read them through the group", v.Name)
			}
		}
	})

	t.Run("security", func(t *testing.T) {
		sc, csc := cl.pod.SecurityContext, cl.c.SecurityContext
		if !(isTrue(sc.RunAsNonRoot) || isTrue(csc.RunAsNonRoot)) {
			t.Error("want runAsNonRoot: true")
		}
		uid := sc.RunAsUser
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
		if uid == nil || *uid != int64(cl.image.uid) {
			t.Errorf("runAsUser %v; want the image's USER %d", deref(uid), cl.image.uid)
		}
		if sc.SeccompProfile.Type != "RuntimeDefault" {
			t.Errorf("seccompProfile %q; want RuntimeDefault", sc.SeccompProfile.Type)
		}
		if !isTrue(csc.ReadOnlyRootFilesystem) {
			t.Error("want readOnlyRootFilesystem: true")
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Error("want allowPrivilegeEscalation: false")
		}
		if !slices.Contains(csc.Capabilities.Drop, "ALL") {
			t.Errorf("capabilities.drop %v; want ALL", csc.Capabilities.Drop)
		}
		if cl.pod.AutomountServiceAccountToken == nil || *cl.pod.AutomountServiceAccountToken {
			t.Error("want automountServiceAccountToken: false (aemproxy calls no Kubernetes API)")
		}
		if cl.pod.EnableServiceLinks == nil || *cl.pod.EnableServiceLinks {
			t.Error("want enableServiceLinks: false: a Service named aemproxy injects AEMPROXY_* variables")
		}
		for _, kind := range []string{"requests", "limits"} {
			m := cl.c.Resources.Requests
			if kind == "limits" {
				m = cl.c.Resources.Limits
			}
			for _, r := range []string{"cpu", "memory"} {
				if m[r] == "" {
					t.Errorf("resources.%s.%s: not set", kind, r)
				}
			}
		}
		img := cl.c.Image
		if !strings.Contains(img, "@sha256:") && (!strings.Contains(path.Base(img), ":") || strings.HasSuffix(img, ":latest")) {
			t.Errorf("image %s: pin a version tag or digest", img)
		}
	})

	t.Run("scaling", func(t *testing.T) {
		labels := d.Spec.Template.Metadata.Labels
		if !selects(d.Spec.Selector.MatchLabels, labels) {
			t.Errorf("selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, labels)
		}
		replicas := 1
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if replicas < 2 {
			t.Errorf("replicas %d; want at least 2", replicas)
		}
		minReplicas := replicas
		if len(cl.hpas) == 0 {
			t.Error("no HorizontalPodAutoscaler")
		}
		for _, h := range cl.hpas {
			ref := h.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.Name != cl.deployName {
				t.Errorf("HPA targets %s/%s; want Deployment/%s", ref.Kind, ref.Name, cl.deployName)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
				t.Error("HPA minReplicas: want at least 2")
			} else {
				minReplicas = *h.Spec.MinReplicas
			}
			if h.Spec.MaxReplicas < minReplicas || replicas < minReplicas || replicas > h.Spec.MaxReplicas {
				t.Errorf("replicas %d, HPA %d..%d: inconsistent", replicas, minReplicas, h.Spec.MaxReplicas)
			}
		}
		if len(cl.pdbs) == 0 {
			t.Error("no PodDisruptionBudget")
		}
		for _, p := range cl.pdbs {
			if !selects(p.Spec.Selector.MatchLabels, labels) {
				t.Errorf("PDB selector %v does not select the pods", p.Spec.Selector.MatchLabels)
			}
			switch {
			case p.Spec.MinAvailable != nil && p.Spec.MinAvailable.isInt && p.Spec.MinAvailable.i >= minReplicas:
				t.Errorf("PDB minAvailable %d with %d replicas blocks every node drain", p.Spec.MinAvailable.i, minReplicas)
			case p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.isInt && p.Spec.MaxUnavailable.i < 1:
				t.Error("PDB maxUnavailable 0 blocks every node drain")
			}
		}
	})

	t.Run("network policy", func(t *testing.T) {
		if len(cl.netpols) == 0 {
			t.Fatal("no NetworkPolicy: whoever reaches the proxy port acts as the AEM technical account")
		}
		_, proxyPort := splitHostPort(t, "listen", cl.setting(t, "listen", cfg.Listen))
		for _, np := range cl.netpols {
			if !selects(np.Spec.PodSelector.MatchLabels, d.Spec.Template.Metadata.Labels) {
				t.Errorf("NetworkPolicy podSelector %v does not select the pods", np.Spec.PodSelector.MatchLabels)
			}
			if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
				t.Error("NetworkPolicy: policyTypes lacks Ingress")
			}
			admitted := false
			for i, rule := range np.Spec.Ingress {
				ports := map[int]bool{}
				for _, p := range rule.Ports {
					ports[cl.containerPort(t, p.Port)] = true
				}
				if len(rule.From) == 0 && (len(ports) == 0 || ports[proxyPort]) {
					t.Errorf("NetworkPolicy ingress[%d] admits anyone to the proxy port %d", i, proxyPort)
				}
				admitted = admitted || ports[proxyPort] || len(ports) == 0
			}
			if !admitted {
				t.Errorf("NetworkPolicy admits nobody to the proxy port %d", proxyPort)
			}
		}
	})
}

func isTrue(b *bool) bool { return b != nil && *b }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

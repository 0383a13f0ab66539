package dashboards

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func readYAML(t *testing.T, file string, into any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestProvisioning: the datasource is the one every dashboard's DS_PROMETHEUS picks
// by default, the dashboard provider reads where compose mounts the JSON files, and
// every file compose mounts exists.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL, Access string
			IsDefault                    bool `yaml:"isDefault"`
			JSONData                     struct {
				TimeInterval string `yaml:"timeInterval"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join("provisioning", "datasources", "prometheus.yaml"), &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("datasources: %+v", ds)
	}
	d := ds.Datasources[0]
	if d.Type != "prometheus" || !d.IsDefault || d.URL != "${PROMETHEUS_URL}" || d.Access != "proxy" {
		t.Errorf("datasource %+v: want the default prometheus at ${PROMETHEUS_URL}, proxied", d)
	}
	// $__rate_interval is 4 × the scrape interval Grafana is told; stampede scrapes every 1 s.
	if d.JSONData.TimeInterval != "1s" {
		t.Errorf("timeInterval %q, want 1s (the scrape interval of stampede's Prometheus)", d.JSONData.TimeInterval)
	}

	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Type string
			Options    struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join("provisioning", "dashboards", "stampede.yaml"), &prov)
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers: %+v", prov)
	}
	dashDir := prov.Providers[0].Options.Path

	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			NetworkMode string            `yaml:"network_mode"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Command     []string          `yaml:"command"`
		} `yaml:"services"`
	}
	readYAML(t, "docker-compose.yml", &compose)
	graf, ok := compose.Services["grafana"]
	if !ok {
		t.Fatal("compose has no grafana service")
	}
	prom, ok := compose.Services["prometheus"]
	if !ok {
		t.Fatal("compose has no prometheus service")
	}
	for name, svc := range compose.Services {
		// stampede's processes listen on 127.0.x.x: only the host's network reaches them.
		if svc.NetworkMode != "host" {
			t.Errorf("service %s: network_mode %q, want host", name, svc.NetworkMode)
		}
		if !strings.Contains(svc.Image, ":") || strings.HasSuffix(svc.Image, ":latest") {
			t.Errorf("service %s: image %q, want a pinned version", name, svc.Image)
		}
	}
	if !strings.Contains(graf.Environment["PROMETHEUS_URL"], "127.0.0.1:9090") {
		t.Errorf("grafana's PROMETHEUS_URL %q does not default to compose's Prometheus", graf.Environment["PROMETHEUS_URL"])
	}
	mounted := map[string]string{} // container path → host path
	for _, svc := range []string{"grafana", "prometheus"} {
		for _, v := range compose.Services[svc].Volumes {
			parts := splitVolume(v)
			if len(parts) < 2 {
				t.Errorf("%s volume %q: want host:container", svc, v)
				continue
			}
			host, ctr := parts[0], parts[1]
			mounted[ctr] = host
			if strings.HasPrefix(host, "./") {
				if _, err := os.Stat(host); err != nil {
					t.Errorf("%s mounts %s, which does not exist: %v", svc, host, err)
				}
			}
		}
	}
	for _, f := range Files {
		if host := mounted[path.Join(dashDir, f)]; host != "./"+f {
			t.Errorf("dashboard %s is not mounted at %s (the provider's path): %q", f, path.Join(dashDir, f), host)
		}
	}
	if mounted["/etc/grafana/provisioning/datasources"] != "./provisioning/datasources" ||
		mounted["/etc/grafana/provisioning/dashboards"] != "./provisioning/dashboards" {
		t.Errorf("provisioning directories not mounted where Grafana reads them: %v", mounted)
	}
	if mounted["/etc/prometheus/prometheus.yml"] != "./prometheus.yml" ||
		!strings.Contains(strings.Join(prom.Command, " "), "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("compose's Prometheus does not run dashboards/prometheus.yml: %v %v", prom.Command, mounted)
	}
	var pcfg promConfig
	readYAML(t, "prometheus.yml", &pcfg)
	if len(pcfg.ScrapeConfigs) != 1 || len(pcfg.ScrapeConfigs[0].FileSD) != 1 {
		t.Fatalf("prometheus.yml scrape configs: %+v", pcfg.ScrapeConfigs)
	}
	for _, f := range pcfg.ScrapeConfigs[0].FileSD[0].Files {
		if host := mounted[path.Dir(f)]; host == "" {
			t.Errorf("prometheus.yml reads targets from %s, which compose does not mount", f)
		}
	}
}

// promConfig is the part of a Prometheus configuration compared here.
type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName     string `yaml:"job_name"`
		HonorLabels bool   `yaml:"honor_labels"`
		FileSD      []struct {
			Files []string `yaml:"files"`
		} `yaml:"file_sd_configs"`
		Relabel []map[string]any `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
}

// TestPrometheusConfigIsValid runs Debian's promtool on compose's prometheus.yml.
func TestPrometheusConfigIsValid(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (make test does)")
	}
	out, err := exec.Command(promtool, "check", "config", "prometheus.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check config prometheus.yml: %v\n%s", err, out)
	}
}

// splitVolume splits a compose volume "host:container[:mode]" at the colons outside
// ${VAR:-default} substitutions.
func splitVolume(v string) []string {
	var parts []string
	depth, start := 0, 0
	for i, r := range v {
		switch {
		case r == '{':
			depth++
		case r == '}' && depth > 0:
			depth--
		case r == ':' && depth == 0:
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	return append(parts, v[start:])
}

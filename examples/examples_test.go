package examples_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// The files under test, relative to this package's directory.
const (
	dashboardFile = "grafana/tokenbroker.json"
	alertsFile    = "prometheus/alerts.yml"
)

// TestDashboardAndAlertsUseExportedMetrics runs a broker, drives it until
// every metric family it has exists in its /metrics, and checks that the
// dashboard and the alerting rules query only series that scrape has, with
// labels and label values it can have. A renamed metric, label or action
// phrase otherwise shows as a silently empty panel or an alert that can
// never fire.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := scrapeDrivenBroker(t)

	var queries []query
	queries = append(queries, dashboardQueries(t, readDashboard(t))...)
	queries = append(queries, ruleQueries(readRules(t))...)
	if len(queries) == 0 {
		t.Fatal("no PromQL expression found in the dashboard or the rules")
	}
	shown := map[string]bool{}
	for _, q := range queries {
		refs, err := parseQuery(q.expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, q.expr)
			continue
		}
		for _, problem := range exported.check(refs) {
			t.Errorf("%s: %s\n%s", q.where, problem, q.expr)
		}
		if strings.HasPrefix(q.where, dashboardFile) {
			for _, r := range refs.metrics {
				shown[exported.samples[r.name]] = true
			}
		}
	}
	// The other direction: a family the broker exports but the dashboard
	// does not show is one nobody looks at.
	for _, f := range exported.families() {
		if !shown[f] {
			t.Errorf("%s shows nothing of %s, which the broker exports: add a panel", dashboardFile, f)
		}
	}
}

// scrapeDrivenBroker starts a broker with its HTTP gateway on a loopback
// port and a certificate credential, asks it for a token and then for a
// forced refresh, and returns what its /metrics then exports. A counter
// with labels is exported only once one of its series has been counted,
// so each request is there to make families exist: the new token counts a
// request, an IdP call and its duration, and a token.refreshed event; the
// forced refresh a refresh. The certificate credential feeds
// tokenbroker_certificate_expiry_seconds at start-up; the gauge of
// credentials and the audit counter exist from the start.
func scrapeDrivenBroker(t *testing.T) *exposition {
	t.Helper()
	cert, _, certPEM, keyPEM, err := fakeidp.GenerateCertificate("tokenbroker-examples")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := brokertest.Start(t, brokertest.Options{Adjust: func(c *config.Config, idp *fakeidp.Server) {
		c.HTTPAddr = "127.0.0.1:0"
		idp.AddCertificateClient("cert-app", cert)
		c.Credentials = append(c.Credentials, config.Credential{
			Name: "cert-app", Grant: config.GrantClientAssertion, TokenEndpoint: idp.V2TokenURL(), ClientID: "cert-app",
			Scope: brokertest.Resource + "/.default", CertificateFile: certFile, PrivateKeyFile: keyFile,
			RefreshThreshold: 10 * time.Minute,
		})
	}})
	base := "http://" + e.Broker.HTTPAddr()

	login := `{"username":"` + brokertest.User + `","password":"` + brokertest.Password + `"`
	if action := requestToken(t, base, login+`}`); action != tokenbroker.ActionNew {
		t.Fatalf("first request: action %q, want %q", action, tokenbroker.ActionNew)
	}
	if action := requestToken(t, base, login+`,"force_refresh":true}`); action == tokenbroker.ActionNew || action == tokenbroker.ActionExisting {
		t.Fatalf("forced refresh: action %q, want a refresh", action)
	}

	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The classic text format, which parseExposition reads.
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	body := fetch(t, req)
	exp, err := parseExposition(body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return exp
}

// requestToken posts body to /requesttoken and returns the reply's action.
func requestToken(t *testing.T, base, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/requesttoken", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	var reply struct {
		Action string `json:"action"`
	}
	if err := json.Unmarshal([]byte(fetch(t, req)), &reply); err != nil {
		t.Fatal(err)
	}
	return reply.Action
}

// fetch sends req and returns the body of its 200 answer.
func fetch(t *testing.T, req *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", req.Method, req.URL.Path, resp.StatusCode, data)
	}
	return string(data)
}

// exposition is what one scrape exported.
type exposition struct {
	// samples maps each series name that can be queried (a counter's
	// name with _total, a histogram's _bucket, _sum and _count) to its
	// family, the name of its # TYPE line.
	samples map[string]string
	// labels holds the label names seen on each series name.
	labels map[string]map[string]bool
	// types holds each family's type.
	types map[string]string
}

// parseExposition reads the Prometheus text format (version 0.0.4).
func parseExposition(text string) (*exposition, error) {
	e := &exposition{samples: map[string]string{}, labels: map[string]map[string]bool{}, types: map[string]string{}}
	for n, line := range strings.Split(text, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			e.types[name] = typ
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, labels, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v: %q", n+1, err, line)
		}
		family := name
		if _, ok := e.types[name]; !ok {
			// A histogram's or a summary's series carry a suffix that
			// their # TYPE line does not.
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && (e.types[base] == "histogram" || e.types[base] == "summary") {
					family = base
				}
			}
			if _, ok := e.types[family]; !ok {
				return nil, fmt.Errorf("line %d: series %s has no # TYPE", n+1, name)
			}
		}
		e.samples[name] = family
		if e.labels[name] == nil {
			e.labels[name] = map[string]bool{}
		}
		for _, l := range labels {
			e.labels[name][l] = true
		}
	}
	return e, nil
}

// parseSample returns the name and label names of a sample line,
// name{a="x",b="y"} value.
func parseSample(line string) (name string, labels []string, err error) {
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return "", nil, fmt.Errorf("no value")
	}
	name, rest := line[:i], line[i:]
	if rest[0] != '{' {
		return name, nil, nil
	}
	rest = rest[1:]
	for {
		if r, ok := strings.CutPrefix(rest, "}"); ok {
			if !strings.HasPrefix(r, " ") {
				return "", nil, fmt.Errorf("no value after the labels")
			}
			return name, labels, nil
		}
		label, after, ok := strings.Cut(rest, `="`)
		if !ok {
			return "", nil, fmt.Errorf("malformed labels")
		}
		labels = append(labels, label)
		// The value ends at the first quote that is not escaped.
		j := 0
		for ; j < len(after) && after[j] != '"'; j++ {
			if after[j] == '\\' {
				j++
			}
		}
		if j >= len(after) {
			return "", nil, fmt.Errorf("unterminated label value")
		}
		rest = strings.TrimPrefix(after[j+1:], ",")
	}
}

// families returns the tokenbroker families exported, sorted.
func (e *exposition) families() []string {
	var out []string
	for f := range e.types {
		if strings.HasPrefix(f, metrics.Namespace+"_") {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// scrapeLabels are the labels Prometheus adds to every series it scrapes;
// an expression may select or group by them.
var scrapeLabels = []string{"job", "instance"}

// labelValues are the values each label of a family can take, from the
// constants the broker counts with (metrics.Other, for anything outside
// them, is allowed everywhere). A label not listed here, such as the
// certificate gauge's credential, takes any value.
var labelValues = map[string]map[string][]string{
	"tokenbroker_requests_total": {
		"transport": {metrics.TransportNATS, metrics.TransportHTTP},
		"outcome": {metrics.OutcomeOK, metrics.OutcomeDropped,
			codeLabel(tokenbroker.CodeInvalidRequest), codeLabel(tokenbroker.CodeRejected), codeLabel(tokenbroker.CodeNotFound),
			codeLabel(tokenbroker.CodeTooLarge), codeLabel(tokenbroker.CodeTooMany), codeLabel(tokenbroker.CodeBadGateway),
			codeLabel(tokenbroker.CodeUnavailable), codeLabel(tokenbroker.CodeTimeout), codeLabel(tokenbroker.CodeInternal)},
		"action": {"", tokenbroker.ActionNew, tokenbroker.ActionExisting, tokenbroker.ActionRefreshed, tokenbroker.ActionReplacedExpired},
	},
	"tokenbroker_idp_calls_total": {
		"grant":   idpGrants,
		"outcome": {string(oauth.OutcomeOK), string(oauth.OutcomeRejected), string(oauth.OutcomeUnusable), string(oauth.OutcomeUnavailable)},
	},
	"tokenbroker_idp_call_duration_seconds": {"grant": idpGrants},
	"tokenbroker_refreshes_total":           {"outcome": {metrics.OutcomeOK, metrics.OutcomeFailed}},
	"tokenbroker_events_published_total":    {"kind": {metrics.EventRefreshed, metrics.EventFailed}},
}

// idpGrants are the grant_type values metrics.IdPCall documents.
var idpGrants = []string{"password", "client_credentials", "client_assertion", "refresh_token"}

func codeLabel(code int) string { return strconv.Itoa(code) }

// check returns what is wrong with the references of one expression: a
// series the scrape does not have, a label its series do not carry, a
// value its label never takes.
func (e *exposition) check(q *queryRefs) []string {
	var problems []string
	known := map[string]bool{}
	for _, l := range scrapeLabels {
		known[l] = true
	}
	for _, r := range q.metrics {
		family, ok := e.samples[r.name]
		if !ok {
			msg := fmt.Sprintf("%s is not in the broker's /metrics", r.name)
			if e.types[r.name] == "histogram" {
				msg += " (a histogram is queried as _bucket, _sum or _count)"
			}
			problems = append(problems, msg)
			continue
		}
		for l := range e.labels[r.name] {
			known[l] = true
		}
		for _, m := range r.matchers {
			if !e.labels[r.name][m.label] && !slices.Contains(scrapeLabels, m.label) {
				problems = append(problems, fmt.Sprintf("%s has no label %q", r.name, m.label))
				continue
			}
			allowed, listed := labelValues[family][m.label]
			if !listed {
				continue
			}
			for _, v := range m.literals() {
				if v != metrics.Other && !slices.Contains(allowed, v) {
					problems = append(problems, fmt.Sprintf("%s{%s} is never %q: it takes %q", r.name, m.label, v, allowed))
				}
			}
		}
	}
	if len(q.metrics) == 0 {
		// Only the scrape's own series (up): its labels are not ours to
		// know.
		return problems
	}
	for _, l := range q.grouping {
		if !known[l] {
			problems = append(problems, fmt.Sprintf("grouping by %q, which none of its series carries", l))
		}
	}
	return problems
}

// query is one PromQL expression and where it was found.
type query struct {
	where string
	expr  string
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource *datasource     `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	// Panels are a collapsed row's.
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dsInput is the datasource the dashboard asks for when imported.
const dsInput = "DS_PROMETHEUS"

func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// dashboardQueries returns every PromQL expression of d: its panels'
// targets and its query variables.
func dashboardQueries(t *testing.T, d *dashboard) []query {
	t.Helper()
	var out []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, query{fmt.Sprintf("%s: panel %q, target %s", dashboardFile, p.Title, tg.RefID), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// Grafana 10 writes a variable's query as an object; older
		// dashboards as a string.
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Errorf("%s: variable %q: query is neither an object nor a string", dashboardFile, v.Name)
				continue
			}
		}
		out = append(out, query{fmt.Sprintf("%s: variable %q", dashboardFile, v.Name), q.Query})
	}
	return out
}

// TestDashboardIsImportable checks what Grafana's import needs: the
// datasource input, and every panel, target and variable on it, so that
// importing asks for one Prometheus and binds everything to it.
func TestDashboardIsImportable(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: all are needed", d.UID, d.Title, d.SchemaVersion)
	}
	found := false
	for _, in := range d.Inputs {
		found = found || in.Name == dsInput && in.Type == "datasource" && in.PluginID == "prometheus"
	}
	if !found {
		t.Errorf("__inputs lacks the Prometheus datasource %s", dsInput)
	}
	want := "${" + dsInput + "}"
	bound := func(ds *datasource) bool { return ds != nil && ds.Type == "prometheus" && ds.UID == want }
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if other, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if !bound(p.Datasource) {
				t.Errorf("panel %q: datasource %+v, want prometheus %s", p.Title, p.Datasource, want)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q: target %q: needs a unique refId and an expr", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && !bound(tg.Datasource) {
					t.Errorf("panel %q: target %s: datasource %+v, want prometheus %s", p.Title, tg.RefID, tg.Datasource, want)
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type == "query" && !bound(v.Datasource) {
			t.Errorf("variable %q: datasource %+v, want prometheus %s", v.Name, v.Datasource, want)
		}
	}
}

// ruleFile is a Prometheus rules file. Decoded with KnownFields, so that
// a misspelt key ("annotation:") fails instead of vanishing.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         *string           `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readRules(t *testing.T) *ruleFile {
	t.Helper()
	f, err := os.Open(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var rf ruleFile
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return &rf
}

func ruleQueries(rf *ruleFile) []query {
	var out []query
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out = append(out, query{fmt.Sprintf("%s: %s", alertsFile, r.Alert+r.Record), r.Expr})
		}
	}
	return out
}

// promDuration is Prometheus' duration syntax: units from ms to years,
// largest first, such as 1h30m.
var promDuration = regexp.MustCompile(`^([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$`)

// severities are the values alert routing is expected to match on.
var severities = []string{"critical", "warning", "info"}

// TestAlertRulesAreComplete checks that every alert says how long it must
// hold, how bad it is and what it means: an alert without for fires on one
// bad scrape, one without severity is routed nowhere in particular, and one
// without summary and description tells the person paged nothing.
func TestAlertRulesAreComplete(t *testing.T) {
	rf := readRules(t)
	if len(rf.Groups) == 0 {
		t.Fatalf("%s has no groups", alertsFile)
	}
	names := map[string]bool{}
	alerts := 0
	for _, g := range rf.Groups {
		if g.Name == "" || names["group "+g.Name] {
			t.Errorf("group %q: needs a unique name", g.Name)
		}
		names["group "+g.Name] = true
		for i, r := range g.Rules {
			where := fmt.Sprintf("group %q, rule %d (%s)", g.Name, i, r.Alert+r.Record)
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: needs exactly one of alert and record", where)
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			if names[r.Alert] {
				t.Errorf("%s: alert name used twice", where)
			}
			names[r.Alert] = true
			switch {
			case r.For == nil:
				t.Errorf("%s: no for", where)
			case *r.For == "" || !promDuration.MatchString(*r.For):
				t.Errorf("%s: for %q is not a Prometheus duration", where, *r.For)
			}
			if !slices.Contains(severities, r.Labels["severity"]) {
				t.Errorf("%s: labels.severity %q, want one of %q", where, r.Labels["severity"], severities)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no annotations.%s", where, a)
				}
			}
		}
	}
	if alerts == 0 {
		t.Errorf("%s has no alerts", alertsFile)
	}
}

// queryRefs is what one PromQL expression refers to.
type queryRefs struct {
	metrics []metricRef
	// grouping holds the labels of by, without, on, ignoring,
	// group_left and group_right clauses.
	grouping []string
}

type metricRef struct {
	name     string
	matchers []matcher
}

type matcher struct {
	label, op, value string
}

// literalAlternation is a regular expression that is only a list of
// literal values, such as "unavailable|unusable".
var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9 _-]*(\|[A-Za-z0-9 _-]*)*$`)

// literals returns the values m names, for checking against what its label
// can be: the value of = and !=, each branch of a regular expression that
// is a plain alternation. It returns none for a Grafana variable or a real
// regular expression, which cannot be checked that way.
func (m matcher) literals() []string {
	if strings.Contains(m.value, "$") {
		return nil
	}
	switch m.op {
	case "=", "!=":
		return []string{m.value}
	case "=~", "!~":
		if literalAlternation.MatchString(m.value) {
			return strings.Split(m.value, "|")
		}
	}
	return nil
}

// groupingKeywords take a parenthesised list of label names.
var groupingKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}

// parseQuery finds the tokenbroker series an expression selects, with
// their label matchers, and the labels it groups or matches by. It is a
// tokenizer, not a PromQL parser: enough to find names, since names are
// what drift.
func parseQuery(expr string) (*queryRefs, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, err
	}
	q := &queryRefs{}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := func(text string) bool { return i+1 < len(toks) && toks[i+1].kind == tkPunct && toks[i+1].text == text }
		switch {
		case tk.kind == tkIdent && slices.Contains(groupingKeywords, tk.text) && next("("):
			for i += 2; i < len(toks) && toks[i].text != ")"; i++ {
				if toks[i].kind == tkIdent {
					q.grouping = append(q.grouping, toks[i].text)
				}
			}
		case tk.kind == tkIdent && strings.HasPrefix(tk.text, metrics.Namespace+"_"):
			r := metricRef{name: tk.text}
			if next("{") {
				i++
				if r.matchers, i, err = parseMatchers(toks, i); err != nil {
					return nil, err
				}
			}
			q.metrics = append(q.metrics, r)
		case tk.kind == tkPunct && tk.text == "{":
			// The matchers of another series (up): skip them, so that
			// their label names are not read as anything else.
			if _, i, err = parseMatchers(toks, i); err != nil {
				return nil, err
			}
		}
	}
	return q, nil
}

// parseMatchers reads label matchers from the { at toks[i] and returns
// them with the index of the closing }.
func parseMatchers(toks []token, i int) ([]matcher, int, error) {
	var ms []matcher
	for i++; i < len(toks); i++ {
		switch {
		case toks[i].text == "}" && toks[i].kind == tkPunct:
			return ms, i, nil
		case toks[i].text == "," && toks[i].kind == tkPunct:
		case i+2 < len(toks) && toks[i].kind == tkIdent && toks[i+1].kind == tkOp && toks[i+2].kind == tkString:
			ms = append(ms, matcher{toks[i].text, toks[i+1].text, toks[i+2].text})
			i += 2
		default:
			return nil, i, fmt.Errorf("unexpected %q in label matchers", toks[i].text)
		}
	}
	return nil, i, fmt.Errorf("unclosed label matchers")
}

type tokenKind int

const (
	tkIdent  tokenKind = iota // a metric, label, function or keyword name
	tkString                  // a quoted string, unquoted
	tkOp                      // a matcher or comparison operator
	tkPunct                   // ( ) { } [ ] ,
	tkOther                   // numbers, durations, Grafana variables, arithmetic
)

type token struct {
	kind tokenKind
	text string
}

// tokenize splits a PromQL expression, which may hold Grafana variables
// ($__rate_interval, ${DS_PROMETHEUS}), into tokens. Strings are their own
// tokens, so that a name inside one is never taken for a series.
func tokenize(s string) ([]token, error) {
	var toks []token
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			// A comment runs to the end of the line.
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			toks = append(toks, token{tkString, b.String()})
			i = j + 1
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			toks = append(toks, token{tkIdent, s[i:j]})
			i = j
		case c == '$':
			j := i + 1
			if j < len(s) && s[j] == '{' {
				for j < len(s) && s[j] != '}' {
					j++
				}
				j++
			} else {
				for j < len(s) && isIdent(s[j]) {
					j++
				}
			}
			toks = append(toks, token{tkOther, s[i:min(j, len(s))]})
			i = j
		case '0' <= c && c <= '9' || c == '.':
			// Numbers and durations (5m, 1e3, 0.95) alike.
			j := i
			for j < len(s) && (isIdent(s[j]) || s[j] == '.') {
				j++
			}
			toks = append(toks, token{tkOther, s[i:j]})
			i = j
		case strings.ContainsRune("(){}[],", rune(c)):
			toks = append(toks, token{tkPunct, string(c)})
			i++
		default:
			op := string(c)
			if i+1 < len(s) && slices.Contains([]string{"=~", "!~", "!=", "==", ">=", "<="}, s[i:i+2]) {
				op = s[i : i+2]
			}
			kind := tkOther
			if slices.Contains([]string{"=", "!=", "=~", "!~"}, op) {
				kind = tkOp
			}
			toks = append(toks, token{kind, op})
			i += len(op)
		}
	}
	return toks, nil
}

// TestParseQuery pins the tokenizer on the forms the examples use, so that
// a change to it cannot quietly make the check above see nothing.
func TestParseQuery(t *testing.T) {
	q, err := parseQuery(`histogram_quantile(0.99, sum by (grant, le) (rate(tokenbroker_idp_call_duration_seconds_bucket{job=~"$job", instance=~"$instance"}[$__rate_interval])))
		/ on (job) group_left ignoring(x) sum(up{job="tokenbroker_not_a_series"}) # tokenbroker_comment
		+ tokenbroker_credentials > 30 * 86400 unless tokenbroker_requests_total{outcome!~"unavailable|unusable", action="returned existing token"}`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range q.metrics {
		names = append(names, r.name)
	}
	if want := []string{"tokenbroker_idp_call_duration_seconds_bucket", "tokenbroker_credentials", "tokenbroker_requests_total"}; !slices.Equal(names, want) {
		t.Errorf("series %q, want %q", names, want)
	}
	if want := []string{"grant", "le", "job", "x"}; !slices.Equal(q.grouping, want) {
		t.Errorf("grouping %q, want %q", q.grouping, want)
	}
	if got, want := q.metrics[2].matchers, []matcher{{"outcome", "!~", "unavailable|unusable"}, {"action", "=", "returned existing token"}}; !slices.Equal(got, want) {
		t.Errorf("matchers %q, want %q", got, want)
	}
	if got := q.metrics[2].matchers[0].literals(); !slices.Equal(got, []string{"unavailable", "unusable"}) {
		t.Errorf("literals %q", got)
	}
	if got := q.metrics[0].matchers[0].literals(); got != nil {
		t.Errorf("a Grafana variable gave literals %q", got)
	}
	if _, err := parseQuery(`tokenbroker_credentials{job="x"`); err == nil {
		t.Error("unclosed matchers accepted")
	}

	// And the check itself: each kind of mistake is reported.
	e := &exposition{
		samples: map[string]string{"tokenbroker_refreshes_total": "tokenbroker_refreshes_total"},
		labels:  map[string]map[string]bool{"tokenbroker_refreshes_total": {"outcome": true}},
		types:   map[string]string{"tokenbroker_refreshes_total": "counter"},
	}
	for expr, want := range map[string]string{
		`tokenbroker_refresh_total`:                                    "not in the broker's /metrics",
		`tokenbroker_refreshes_total{result="ok"}`:                     `no label "result"`,
		`tokenbroker_refreshes_total{outcome="error"}`:                 `is never "error"`,
		`sum by (grant) (tokenbroker_refreshes_total)`:                 `grouping by "grant"`,
		`sum by (job) (tokenbroker_refreshes_total{outcome="failed"})`: "",
	} {
		q, err := parseQuery(expr)
		if err != nil {
			t.Fatal(err)
		}
		problems := strings.Join(e.check(q), "; ")
		if want == "" && problems != "" || !strings.Contains(problems, want) {
			t.Errorf("%s: problems %q, want %q", expr, problems, want)
		}
	}
}

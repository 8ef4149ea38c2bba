package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// rawRequest is an HTTP/1.1 POST to the webhook path with the given
// headers (Content-Length added unless one is given or the body is
// chunked) and body.
func rawRequest(body string, headers ...string) string {
	var b strings.Builder
	b.WriteString("POST " + WebhookPath + " HTTP/1.1\r\nHost: ingest\r\n")
	hasLength := false
	for _, h := range headers {
		if strings.HasPrefix(strings.ToLower(h), "content-length:") || strings.HasPrefix(strings.ToLower(h), "transfer-encoding:") {
			hasLength = true
		}
		b.WriteString(h + "\r\n")
	}
	if !hasLength {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

const jsonCT = "Content-Type: application/json"

// hostileEnv is an envelope that would pass everything but the secret.
func hostileEnv(extra string) string {
	return `{"action":"incoming_event","organization_id":"` + fixtureOrg + `","secret_key":"wrong-secret"` + extra + `,"payload":{"chat_id":"HOSTILE"}}`
}

// send writes the parts of a request with pause between them, half-closes
// when asked, and reads the answer.
type sendPlan struct {
	parts     []string
	pause     time.Duration
	closeSend bool // half-close after the last part (a body cut short)
}

func (p sendPlan) do(addr string) (*http.Response, []byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	for i, part := range p.parts {
		if i > 0 && p.pause > 0 {
			time.Sleep(p.pause)
		}
		if _, err := io.WriteString(c, part); err != nil {
			break // the server may answer and close before reading it all
		}
	}
	if p.closeSend {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// TestHostileRequests sends requests no LiveChat would send — broken,
// malicious or slow — to a running ingest: each gets its documented status
// (package doc) with a JSON error body, nothing reaches the topic or the
// spool, the server keeps serving and its live heap stays bounded.
func TestHostileRequests(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.HeaderTimeout = time.Second
	cfg.BodyTimeout = time.Second
	cfg.BodyMemory = 6 << 20 // one 5 MiB body at a time
	srv := startServer(t, cfg)

	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	liveHeap := func() uint64 { metrics.Read(live); return live[0].Value.Uint64() }
	runtime.GC()
	base := liveHeap()
	var peak atomic.Uint64
	sampling, stopSampling := context.WithCancel(context.Background())
	var sampled sync.WaitGroup
	sampled.Go(func() {
		for sampling.Err() == nil {
			if h := liveHeap(); h > peak.Load() {
				peak.Store(h)
			}
			pause(sampling, 20*time.Millisecond)
		}
	})
	defer func() { stopSampling(); sampled.Wait() }()

	deep := func(n int, open, close string) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	huge := strings.Repeat("A", 4<<20)
	big := hostileEnv(`,"pad":"` + strings.Repeat("B", 100<<10) + `"`) // over the 64 KiB budget floor
	plain := func(body string, headers ...string) sendPlan {
		return sendPlan{parts: []string{rawRequest(body, headers...)}}
	}
	cases := []struct {
		name   string
		plan   sendPlan
		status int
		errHas string
	}{
		// Bodies cut short or broken.
		{"truncated body, connection half-closed", sendPlan{parts: []string{rawRequest(hostileEnv(""), jsonCT, "Content-Length: 500")[:200]}, closeSend: true}, 400, ""},
		{"truncated large body, half-closed", sendPlan{parts: []string{rawRequest(big, jsonCT)[:60<<10]}, closeSend: true}, 400, "body"},
		{"truncated JSON", plain(hostileEnv("")[:40], jsonCT), 400, "not valid JSON"},
		{"empty body", plain("", jsonCT), 400, "not valid JSON"},
		{"null", plain("null", jsonCT), 400, "object"},
		{"array", plain(`[{"action":"a"}]`, jsonCT), 400, "object"},
		{"binary", plain("\x00\x01\x02\xff\xfe", jsonCT), 400, "not valid JSON"},
		{"trailing garbage", plain(hostileEnv("")+"}", jsonCT), 400, "not valid JSON"},
		{"two documents", plain(hostileEnv("")+hostileEnv(""), jsonCT), 400, "not valid JSON"},
		{"chunked body cut short", sendPlan{parts: []string{rawRequest("", jsonCT, "Transfer-Encoding: chunked") + "10\r\n{\"action\":\"a\","}, closeSend: true}, 400, ""},
		{"chunked body larger than allowed", sendPlan{parts: []string{rawRequest("", jsonCT, "Transfer-Encoding: chunked") +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 6<<20, strings.Repeat("C", 6<<20))}}, 413, "larger than"},
		// Content type and encoding.
		{"no content type", plain(hostileEnv("")), 415, "application/json"},
		{"text/plain", plain(hostileEnv(""), "Content-Type: text/plain"), 415, "application/json"},
		{"application/jsonp", plain(hostileEnv(""), "Content-Type: application/jsonp"), 415, "application/json"},
		{"multipart", plain("--x\r\n\r\n--x--", "Content-Type: multipart/form-data; boundary=x"), 415, "application/json"},
		{"gzip", plain(hostileEnv(""), jsonCT, "Content-Encoding: gzip"), 415, "encoding"},
		// Shapes.
		{"deep arrays beyond the limit", plain(hostileEnv(`,"x":`+deep(20000, "[", "]")), jsonCT), 400, "not valid JSON"},
		{"deep objects beyond the limit", plain(hostileEnv(`,"x":`+deep(20000, `{"a":`, "}")), jsonCT), 400, "not valid JSON"},
		{"deep nesting within the limit, wrong secret", plain(hostileEnv(`,"x":`+deep(9000, "[", "]")), jsonCT), 401, "secret_key"},
		{"4 MiB string, wrong secret", plain(hostileEnv(`,"x":"`+huge+`"`), jsonCT), 401, "secret_key"},
		{"4 MiB key, wrong secret", plain(hostileEnv(`,"`+huge+`":1`), jsonCT), 401, "secret_key"},
		{"6 MiB body", plain(hostileEnv(`,"x":"`+huge+huge[:2<<20]+`"`), jsonCT), 413, "larger than"},
		{"invalid UTF-8 in a string, wrong secret", plain(hostileEnv(`,"x":"`+"\xff\xfe\xc3"+`"`), jsonCT), 401, "secret_key"},
		{"invalid UTF-8 in the secret", plain(strings.Replace(hostileEnv(""), "wrong-secret", "test-secret\xff", 1), jsonCT), 401, "secret_key"},
		{"invalid UTF-8 outside strings", plain(`{"action":"a","organization_id":"o"`+"\xff"+`}`, jsonCT), 400, "not valid JSON"},
		{"lone surrogate escape, wrong secret", plain(hostileEnv(`,"x":"\ud800"`), jsonCT), 401, "secret_key"},
		{"NUL in a string", plain(hostileEnv(`,"x":"a`+"\x00"+`b"`), jsonCT), 400, "not valid JSON"},
		// Duplicate and ambiguous envelope fields.
		{"duplicate secret_key", plain(hostileEnv(`,"secret_key":"test-secret"`), jsonCT), 400, "duplicate"},
		{"duplicate action", plain(hostileEnv(`,"action":"chat_deactivated"`), jsonCT), 400, "duplicate"},
		{"duplicate organization_id", plain(hostileEnv(`,"organization_id":"other"`), jsonCT), 400, "duplicate"},
		{"secret_key in another case", plain(hostileEnv(`,"Secret_Key":"test-secret"`), jsonCT), 400, "ambiguous"},
		{"escaped duplicate secret_key", plain(hostileEnv(`,"secret\u005fkey":"test-secret"`), jsonCT), 400, "duplicate"},
		{"duplicate unknown keys, wrong secret", plain(hostileEnv(`,"x":1,"x":2`), jsonCT), 401, "secret_key"},
		// secret_key that is not a string.
		{"secret_key number", plain(strings.Replace(hostileEnv(""), `"wrong-secret"`, `12345`, 1), jsonCT), 401, "secret_key"},
		{"secret_key object", plain(strings.Replace(hostileEnv(""), `"wrong-secret"`, `{"v":"test-secret"}`, 1), jsonCT), 401, "secret_key"},
		{"secret_key array", plain(strings.Replace(hostileEnv(""), `"wrong-secret"`, `["test-secret"]`, 1), jsonCT), 401, "secret_key"},
		{"secret_key null", plain(strings.Replace(hostileEnv(""), `"wrong-secret"`, `null`, 1), jsonCT), 401, "secret_key"},
		{"secret_key true", plain(strings.Replace(hostileEnv(""), `"wrong-secret"`, `true`, 1), jsonCT), 401, "secret_key"},
		{"organization_id number", plain(strings.Replace(hostileEnv(""), `"`+fixtureOrg+`"`, `42`, 1), jsonCT), 400, "organization_id"},
		{"license_id negative", plain(`{"action":"a","license_id":-5,"secret_key":"test-secret"}`, jsonCT), 400, "license_id"},
		{"license_id beyond int64", plain(`{"action":"a","license_id":99999999999999999999,"secret_key":"test-secret"}`, jsonCT), 400, "license_id"},
		// HTTP itself.
		{"garbage request line", sendPlan{parts: []string{"\x16\x03\x01 NOT HTTP\r\n\r\n"}}, 400, ""},
		{"headers over 4 KiB", plain(hostileEnv(""), jsonCT, "X-Big: "+strings.Repeat("h", 5000)), 431, ""},
		{"negative content length", plain(hostileEnv(""), jsonCT, "Content-Length: -5"), 400, ""},
		{"GET", sendPlan{parts: []string{"GET " + WebhookPath + " HTTP/1.1\r\nHost: ingest\r\n\r\n"}}, 405, "POST"},
		// Slow.
		{"slow headers", sendPlan{parts: []string{"POST " + WebhookPath + " HTTP/1.1\r\nHost: ingest\r\n", "X-A: 1\r\n", "X-B: 2\r\n"}, pause: 800 * time.Millisecond}, 408, ""},
		{"slow small body", sendPlan{parts: func() []string {
			r := rawRequest(hostileEnv(""), jsonCT)
			return []string{r[:len(r)-40], r[len(r)-40 : len(r)-20], r[len(r)-20:]}
		}(), pause: 800 * time.Millisecond}, 408, ""},
		{"slow large body", sendPlan{parts: func() []string {
			r := rawRequest(big, jsonCT)
			return []string{r[:20<<10], r[20<<10 : 40<<10], r[40<<10:]}
		}(), pause: 800 * time.Millisecond}, 408, "not received"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := tc.plan.do(srv.addr)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tc.status, body)
			}
			var eb errorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error == "" || eb.RequestID == "" || !strings.Contains(eb.Error, tc.errHas) {
				t.Fatalf("error body %.300q, want JSON with an error containing %q and a request_id", body, tc.errHas)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("content type %q", ct)
			}
			assertNoSecret(t, "answer", body)
		})
	}

	t.Run("large bodies over the memory budget", func(t *testing.T) {
		// One 5 MiB body holds the budget while it is being read; a second
		// large one is refused with 503 before its body is read, a small
		// one is not affected. A server of its own, whose body timeout
		// leaves the test all the time it needs.
		bcfg := testConfig(t, kcfg)
		bcfg.BodyMemory = 6 << 20
		bcfg.BodyTimeout = time.Minute
		bsrv := startServer(t, bcfg)
		first := rawRequest(hostileEnv(`,"x":"`+huge+strings.Repeat("D", 900<<10)+`"`), jsonCT) // just under 5 MiB
		c, err := net.Dial("tcp", bsrv.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, first[:64<<10]); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if bsrv.budget.used.Load() == 0 {
				return fmt.Errorf("first body not being read yet")
			}
			return nil
		})
		resp, body, err := plain(hostileEnv(`,"pad":"`+strings.Repeat("E", 3<<19)+`"`), jsonCT).do(bsrv.addr)
		if err != nil || resp.StatusCode != 503 || !strings.Contains(string(body), "too many large") {
			t.Fatalf("second large body while the budget is held: %v %v %s", resp, err, body)
		}
		if r := postWebhook(t, bsrv.url, []byte(hostileEnv(""))); r.status != 401 {
			t.Fatalf("small body while the budget is held: %d %s", r.status, r.body)
		}
		if _, err := io.WriteString(c, first[64<<10:]); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		held, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || held.StatusCode != 401 {
			t.Fatalf("first large body: %v %v", held, err)
		}
		if n := bsrv.budget.used.Load(); n != 0 {
			t.Fatalf("budget holds %d bytes after the requests", n)
		}
		if bsrv.Stats().Counters.Busy != 1 {
			t.Fatalf("busy counter %+v", bsrv.Stats().Counters)
		}
	})
	stopSampling()
	sampled.Wait()

	// Still serving, nothing stored but the sentinel, nothing spooled.
	sentinel := postWebhook(t, srv.url, eventBody(fixtures(t)["incoming_event.agent_message.json"], "SENTINEL", 0))
	if sentinel.status != 200 {
		t.Fatalf("authentic webhook after the hostile ones: %d %s", sentinel.status, sentinel.body)
	}
	recs := consume(t, kcfg, kcfg.RawTopic, 1, 1500*time.Millisecond)
	if len(recs) != 1 {
		t.Fatalf("topic holds %d records, want only the sentinel", len(recs))
	}
	checkDelivered(t, recs, map[string]int{"SENTINEL": 1})
	if segs, _ := filepath.Glob(filepath.Join(cfg.Spool.Dir, "*.seg")); !srv.spool.Empty() || len(segs) != 0 {
		t.Fatalf("spool holds something: %v", segs)
	}
	st := srv.Stats().Counters
	t.Logf("live heap %d MiB before, peak %d MiB; counters %+v", base>>20, peak.Load()>>20, st)
	// The largest bodies are 5-6 MiB; a few may be alive at once with
	// their blanked copies and the scanner's work.
	if grown := int64(peak.Load()) - int64(base); grown > 64<<20 {
		t.Fatalf("live heap grew by %d MiB", grown>>20)
	}
	if st.Accepted != 1 || st.Refused < int64(len(cases)) {
		t.Fatalf("counters: %+v", st)
	}
}

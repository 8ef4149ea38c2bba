package simulate

import (
	"math"
	"sort"
	"time"
)

// Filter selects threads the way the dashboards do: thread start in
// [From, To), and optionally one organization, group and agent.
type Filter struct {
	From, To time.Time
	Org      string // "" = every organization
	Group    int64  // -1 = every group
	Agent    string // "" = every agent
}

func (f Filter) match(t *Thread) bool {
	if t.Start.Before(f.From) || !t.Start.Before(f.To) {
		return false
	}
	if f.Org != "" && t.OrgID != f.Org {
		return false
	}
	if f.Group >= 0 {
		ok := false
		for _, g := range t.Groups {
			ok = ok || int64(g) == f.Group
		}
		if !ok {
			return false
		}
	}
	if f.Agent != "" && !contains(t.Agents, f.Agent) {
		return false
	}
	return true
}

// AgentMetrics are one agent's numbers (agents/performance, chats/ranking).
type AgentMetrics struct {
	Chats int `json:"chats"`
	Good  int `json:"good"`
	Bad   int `json:"bad"`
	// Score is LiveChat's ranking score (Wilson lower bound, z = 2.69).
	Score float64 `json:"score"`
	// ChattingSeconds sums the durations of the agent's closed threads.
	ChattingSeconds float64 `json:"chatting_seconds"`
}

// GroupMetrics are one group's numbers; a chat counts for every group it
// was in (start and transfer targets).
type GroupMetrics struct {
	Chats  int `json:"chats"`
	Missed int `json:"missed"`
	Good   int `json:"good"`
	Bad    int `json:"bad"`
}

// QueueStats are count and average wait (seconds) of a queue outcome.
type QueueStats struct {
	Count   int     `json:"count"`
	AvgWait float64 `json:"avg_wait"`
}

// Metrics are the values the dashboards must show for a Filter, computed
// from the ground truth without ClickHouse. Times are in seconds.
type Metrics struct {
	Chats      int `json:"chats"`
	Continuous int `json:"continuous"`
	// Engagement counts threads by how they started: customer_from_greeting,
	// customer_without_greeting, agent.
	Engagement map[string]int `json:"engagement"`
	// Good and Bad count threads by the rating in force at the end (the
	// last change, given on the thread or on its chat; none after a
	// deletion).
	Good int `json:"good"`
	Bad  int `json:"bad"`
	// Satisfaction is 100·good/(good+bad) (0 with no rating).
	Satisfaction float64 `json:"satisfaction"`
	// First response: threads with one, their median (ClickHouse
	// quantileExact: the element at floor(n/2) of the sorted values) and mean.
	FirstResponseCount  int     `json:"first_response_count"`
	FirstResponseMedian float64 `json:"first_response_median"`
	FirstResponseAvg    float64 `json:"first_response_avg"`
	// FirstResponseBuckets counts first responses by FRTBucket.
	FirstResponseBuckets map[string]int `json:"first_response_buckets"`
	ResponseCount        int            `json:"response_count"`
	ResponseAvg          float64        `json:"response_avg"`
	ResponseMedian       float64        `json:"response_median"`
	// ResponseBuckets counts responses by FRTBucket.
	ResponseBuckets map[string]int `json:"response_buckets"`
	// DurationAvg is the mean duration of closed threads.
	DurationAvg float64 `json:"duration_avg"`
	Missed      int     `json:"missed"`
	// Queue outcomes and abandonment = 100·left/(left+entered).
	QueueEntered QueueStats              `json:"queue_entered"`
	QueueLeft    QueueStats              `json:"queue_left"`
	Abandonment  float64                 `json:"abandonment"`
	Agents       map[string]AgentMetrics `json:"agents"`
	Groups       map[uint32]GroupMetrics `json:"groups"`
	Tags         map[string]int          `json:"tags"`
	Tagged       int                     `json:"tagged"`
	Transfers    int                     `json:"transfers"`
	Postbacks    int                     `json:"postbacks"`
	// Availability is seconds spent accepting chats in [From, To) per agent
	// (Org and Agent filters apply; an interval starts at a change to
	// accepting and ends at the next change, or at To).
	Availability map[string]float64 `json:"availability"`
}

// FRTBuckets are the first-response-time histogram buckets (upper bounds
// in seconds, exclusive) in display order; the last one is open.
var FRTBuckets = []struct {
	Name  string
	Upper float64
}{{"0-15s", 15}, {"15-30s", 30}, {"30-60s", 60}, {"1-2m", 120}, {"2-5m", 300}, {"5m+", math.Inf(1)}}

// FRTBucket names the bucket of a first response time in seconds.
func FRTBucket(s float64) string {
	for _, b := range FRTBuckets {
		if s < b.Upper {
			return b.Name
		}
	}
	return FRTBuckets[len(FRTBuckets)-1].Name
}

// Wilson is LiveChat's agent ranking score: the lower bound of the Wilson
// score interval with z = 2.69 (0 without ratings).
func Wilson(good, bad int) float64 {
	n := float64(good + bad)
	if n == 0 {
		return 0
	}
	const z = 2.69
	p := float64(good) / n
	k := z * z / (4 * n)
	return (p + 2*k - z*math.Sqrt((k/n+p*(1-p))/n)) / (1 + 4*k)
}

func ms(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// sortedMessages orders messages by time, customer before agent on a tie
// (as the dashboards' encoding does).
func sortedMessages(t *Thread) []Msg {
	m := append([]Msg(nil), t.Messages...)
	sort.SliceStable(m, func(i, j int) bool {
		if !m[i].At.Equal(m[j].At) {
			return m[i].At.Before(m[j].At)
		}
		return !m[i].IsAgent && m[j].IsAgent
	})
	return m
}

// FirstResponse returns the time from the first customer message to the
// first agent message at or after it (welcome messages are not messages
// here), and whether there is one.
func FirstResponse(t *Thread) (time.Duration, bool) {
	var t0 time.Time
	found := false
	for _, m := range sortedMessages(t) {
		if !found && !m.IsAgent {
			t0, found = m.At, true
			continue
		}
		if found && m.IsAgent {
			return m.At.Sub(t0), true
		}
	}
	return 0, false
}

// ResponseTimes returns, for every agent message that follows customer
// messages, the time since the first customer message of that run.
func ResponseTimes(t *Thread) []time.Duration {
	var out []time.Duration
	prevAgent := true
	var runStart time.Time
	for _, m := range sortedMessages(t) {
		switch {
		case !m.IsAgent && prevAgent:
			runStart = m.At
		case m.IsAgent && !prevAgent:
			out = append(out, m.At.Sub(runStart))
		}
		prevAgent = m.IsAgent
	}
	return out
}

// Engagement names how the thread started.
func Engagement(t *Thread) string {
	switch {
	case t.FromGreeting:
		return "customer_from_greeting"
	case len(t.Messages) > 0 && sortedMessages(t)[0].IsAgent:
		return "agent"
	default:
		return "customer_without_greeting"
	}
}

// Expect computes the metrics of the dataset for the filter.
func (ds *Dataset) Expect(f Filter) Metrics {
	m := Metrics{
		Engagement: map[string]int{}, FirstResponseBuckets: map[string]int{}, Agents: map[string]AgentMetrics{},
		Groups: map[uint32]GroupMetrics{}, Tags: map[string]int{}, Availability: map[string]float64{},
		ResponseBuckets: map[string]int{},
	}
	var frt, resp []float64
	var frtSum, respSum, durSum float64
	durN := 0
	var qeSum, qlSum float64
	for i := range ds.Threads {
		t := &ds.Threads[i]
		if !f.match(t) {
			continue
		}
		m.Chats++
		if t.Continuous {
			m.Continuous++
		}
		m.Engagement[Engagement(t)]++
		switch t.Rating {
		case 1:
			m.Good++
		case 0:
			m.Bad++
		}
		if d, ok := FirstResponse(t); ok {
			s := ms(d)
			frt = append(frt, s)
			frtSum += s
			m.FirstResponseBuckets[FRTBucket(s)]++
		}
		for _, r := range ResponseTimes(t) {
			m.ResponseCount++
			respSum += ms(r)
			resp = append(resp, ms(r))
			m.ResponseBuckets[FRTBucket(ms(r))]++
		}
		dur := 0.0
		if !t.End.IsZero() {
			dur = ms(t.End.Sub(t.Start))
			durSum += dur
			durN++
			if t.Missed() {
				m.Missed++
			}
		}
		if t.Queued {
			if t.QueueLeft {
				m.QueueLeft.Count++
				qlSum += ms(t.End.Sub(t.Start))
			} else {
				m.QueueEntered.Count++
				qeSum += ms(t.QueueWait)
			}
		}
		for _, a := range t.Agents {
			am := m.Agents[a]
			am.Chats++
			switch t.Rating {
			case 1:
				am.Good++
			case 0:
				am.Bad++
			}
			am.ChattingSeconds += dur
			m.Agents[a] = am
		}
		for _, g := range t.Groups {
			gm := m.Groups[g]
			gm.Chats++
			if !t.End.IsZero() && t.Missed() {
				gm.Missed++
			}
			switch t.Rating {
			case 1:
				gm.Good++
			case 0:
				gm.Bad++
			}
			m.Groups[g] = gm
		}
		for _, tag := range t.Tags {
			m.Tags[tag]++
		}
		if len(t.Tags) > 0 {
			m.Tagged++
		}
		if t.Transfer {
			m.Transfers++
		}
		if t.Postback {
			m.Postbacks++
		}
	}
	for a, am := range m.Agents {
		am.Score = Wilson(am.Good, am.Bad)
		m.Agents[a] = am
	}
	if m.Good+m.Bad > 0 {
		m.Satisfaction = 100 * float64(m.Good) / float64(m.Good+m.Bad)
	}
	if n := len(frt); n > 0 {
		m.FirstResponseCount = n
		m.FirstResponseAvg = frtSum / float64(n)
		sort.Float64s(frt)
		m.FirstResponseMedian = frt[n/2]
	}
	if m.ResponseCount > 0 {
		m.ResponseAvg = respSum / float64(m.ResponseCount)
		sort.Float64s(resp)
		m.ResponseMedian = resp[len(resp)/2]
	}
	if durN > 0 {
		m.DurationAvg = durSum / float64(durN)
	}
	if m.QueueEntered.Count > 0 {
		m.QueueEntered.AvgWait = qeSum / float64(m.QueueEntered.Count)
	}
	if m.QueueLeft.Count > 0 {
		m.QueueLeft.AvgWait = qlSum / float64(m.QueueLeft.Count)
	}
	if n := m.QueueLeft.Count + m.QueueEntered.Count; n > 0 {
		m.Abandonment = 100 * float64(m.QueueLeft.Count) / float64(n)
	}
	m.Availability = ds.availability(f)
	return m
}

func (ds *Dataset) availability(f Filter) map[string]float64 {
	byAgent := map[string][]StatusChange{}
	for _, s := range ds.Statuses {
		if (f.Org != "" && s.OrgID != f.Org) || (f.Agent != "" && s.AgentID != f.Agent) || !s.At.Before(f.To) {
			continue
		}
		byAgent[s.AgentID] = append(byAgent[s.AgentID], s)
	}
	out := map[string]float64{}
	for a, ch := range byAgent {
		sort.SliceStable(ch, func(i, j int) bool { return ch[i].At.Before(ch[j].At) })
		total := time.Duration(0)
		for i, c := range ch {
			if !c.Accepting {
				continue
			}
			end := f.To
			if i+1 < len(ch) {
				end = ch[i+1].At
			}
			start := c.At
			if start.Before(f.From) {
				start = f.From
			}
			if end.After(start) {
				total += end.Sub(start)
			}
		}
		out[a] = ms(total)
	}
	return out
}

// WebhookCounts counts the distinct webhooks (first deliveries) per action
// received in [from, to) for org ("" = all) and the retried deliveries.
func (ds *Dataset) WebhookCounts(from, to time.Time, org string) (byAction map[string]int, retries int) {
	byAction = map[string]int{}
	for _, d := range ds.Deliveries {
		if d.At.Before(from) || !d.At.Before(to) || (org != "" && d.OrgID != org) {
			continue
		}
		if d.Retry {
			retries++
			continue
		}
		byAction[d.Action]++
	}
	return byAction, retries
}

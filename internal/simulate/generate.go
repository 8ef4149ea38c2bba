package simulate

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// Config shapes the simulated traffic. Zero values are not defaults: start
// from DefaultConfig.
type Config struct {
	// Seed makes the traffic reproducible. Default 1.
	Seed uint64
	// Orgs, AgentsPerOrg, GroupsPerOrg and CustomersPerOrg size the world.
	// Defaults 3, 8, 4, 400.
	Orgs, AgentsPerOrg, GroupsPerOrg, CustomersPerOrg int
	// Secret is the secret_key put into every body. Default "sim-secret".
	Secret string
	// RetryRate is the share of deliveries sent a second time with the same
	// body 5–55 s later (a state change's retry sooner when its subject
	// changes again sooner: it always arrives before that change).
	// Default 0.05.
	RetryRate float64
	// LateRate is the share of self-timestamped deliveries (incoming_chat,
	// incoming_event) held back 3–30 s, so they arrive after later ones (an
	// incoming_event before its incoming_chat). Default 0.05.
	LateRate float64
	// StatusEvery is the median time an agent stays accepting chats, and
	// not accepting them outside short breaks (half of the not-accepting
	// spells are breaks of seconds to minutes). Default 40 minutes.
	StatusEvery time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Orgs: 3, AgentsPerOrg: 8, GroupsPerOrg: 4, CustomersPerOrg: 400,
		Secret: "sim-secret", RetryRate: 0.05, LateRate: 0.05, StatusEvery: 40 * time.Minute,
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Orgs < 1 || c.AgentsPerOrg < 2 || c.GroupsPerOrg < 1 || c.CustomersPerOrg < 1 {
		errs = append(errs, errors.New("simulate: need at least 1 org, 2 agents, 1 group and 1 customer per org"))
	}
	if c.RetryRate < 0 || c.RetryRate > 1 || c.LateRate < 0 || c.LateRate > 1 {
		errs = append(errs, errors.New("simulate: retry and late rates must be within [0, 1]"))
	}
	if c.StatusEvery <= 0 {
		errs = append(errs, errors.New("simulate: StatusEvery must be positive"))
	}
	if c.Secret == "" {
		errs = append(errs, errors.New("simulate: empty secret"))
	}
	return errors.Join(errs...)
}

// Generator produces threads and routing-status changes one at a time, so
// both the dataset mode (Generate) and the live sender (Run) use it.
type Generator struct {
	cfg       Config
	rng       *rand.Rand
	orgs      []Org
	customers [][]customer
	threadSeq int
	webhookID map[string]string
	// chatFree: when each chat may start its next thread (chatCooldown
	// after the last delivery of its previous one).
	chatFree map[string]time.Time
	// status: each agent's next routing-status change, so consecutive
	// Statuses calls continue one another.
	status map[string]*agentStatus
}

// chatCooldown is the least time between the last delivery of a chat's
// thread and the start of its next thread. A chat has one thread at a
// time, so a rating sent on the chat belongs to the thread it was sent
// after; and two threads' changes of one chat-wide subject (its access, a
// chat property) are further apart than any dedup window, so the second
// is never taken for a retry of the first.
const chatCooldown = 10 * time.Minute

type customer struct {
	ID, Name, ChatID string
	Geo              geolocation
}

var (
	firstNames = []string{"Anna", "Tom", "Maria", "Li", "Omar", "Eva", "Jonas", "Priya", "Kenji", "Sara", "Diego", "Nora", "Ivan", "Chloe", "Ahmed", "Mia"}
	lastNames  = []string{"Kowalski", "Baker", "Lopez", "Chen", "Haddad", "Novak", "Berg", "Patel", "Sato", "Rossi", "Silva", "Dubois", "Petrov", "Martin", "Ali", "Weber"}
	groupNames = []string{"General", "Billing", "Sales", "Technical", "Returns", "VIP", "Partners", "Onboarding"}
	tagNames   = []string{"billing", "sales", "refund", "bug", "shipping", "feedback", "spam", "account"}
	geos       = []geolocation{
		{"Spain", "ES", "Madrid", "Europe/Madrid"}, {"Poland", "PL", "Warsaw", "Europe/Warsaw"},
		{"United States", "US", "New York", "America/New_York"}, {"Germany", "DE", "Berlin", "Europe/Berlin"},
		{"Japan", "JP", "Tokyo", "Asia/Tokyo"}, {"Brazil", "BR", "Sao Paulo", "America/Sao_Paulo"},
		{"India", "IN", "Mumbai", "Asia/Kolkata"}, {"United Kingdom", "GB", "London", "Europe/London"},
	}
	customerLines = []string{"Hi, I was charged twice for my invoice.", "Where is my order?", "Can I change my plan?", "The app crashes when I log in.", "Do you ship to Canada?", "I need a refund, please.", "How do I reset my password?", "Is there a discount for yearly billing?"}
	agentLines    = []string{"Thanks, let me check that for you.", "I can see your order, one moment please.", "Sure, I have changed that for you.", "Could you send me your order number?", "That is done now. Anything else?", "I am passing this to our billing team."}
)

// New builds the world (organizations, agents, groups, customers) from the seed.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), webhookID: map[string]string{},
		chatFree: map[string]time.Time{}, status: map[string]*agentStatus{}}
	for o := 0; o < cfg.Orgs; o++ {
		org := Org{ID: g.uuid()}
		for i := 0; i < cfg.GroupsPerOrg; i++ {
			org.Groups = append(org.Groups, Group{ID: uint32(i), Name: groupNames[i%len(groupNames)]})
		}
		for i := 0; i < cfg.AgentsPerOrg; i++ {
			fn, ln := firstNames[(i+o)%len(firstNames)], lastNames[(i*3+o)%len(lastNames)]
			a := Agent{ID: fmt.Sprintf("%s.%s%d@org%d.example.com", lower(fn), lower(ln), i, o+1), Name: fn + " " + ln}
			// Every agent is in General (0) and in one or two more groups.
			a.Groups = []uint32{0}
			if cfg.GroupsPerOrg > 1 {
				a.Groups = append(a.Groups, uint32(1+i%(cfg.GroupsPerOrg-1)))
				if i%3 == 0 {
					a.Groups = appendUniq32(a.Groups, uint32(1+(i+1)%(cfg.GroupsPerOrg-1)))
				}
			}
			org.Agents = append(org.Agents, a)
		}
		g.orgs = append(g.orgs, org)
		var cs []customer
		for i := 0; i < cfg.CustomersPerOrg; i++ {
			cs = append(cs, g.newCustomer())
		}
		g.customers = append(g.customers, cs)
	}
	return g, nil
}

func (g *Generator) newCustomer() customer {
	return customer{
		ID:     g.uuid(),
		Name:   firstNames[g.rng.IntN(len(firstNames))] + " " + lastNames[g.rng.IntN(len(lastNames))],
		ChatID: g.lcID(),
		Geo:    geos[g.rng.IntN(len(geos))],
	}
}

// customerFor picks a customer of organization oi whose chat is free at
// start (no thread going on, the last one over for chatCooldown); when a
// few random picks are all busy, a new customer joins the organization.
func (g *Generator) customerFor(oi int, start time.Time) customer {
	for try := 0; try < 16; try++ {
		c := g.customers[oi][g.rng.IntN(len(g.customers[oi]))]
		if !start.Before(g.chatFree[c.ChatID]) {
			return c
		}
	}
	c := g.newCustomer()
	g.customers[oi] = append(g.customers[oi], c)
	return c
}

// Orgs returns the simulated organizations.
func (g *Generator) Orgs() []Org { return g.orgs }

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func appendUniq32(s []uint32, v uint32) []uint32 {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func appendUniq(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func (g *Generator) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, (b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func (g *Generator) lcID() string {
	b := make([]byte, 10)
	for i := range b {
		b[i] = idChars[g.rng.IntN(len(idChars))]
	}
	return string(b)
}

func (g *Generator) hex32() string {
	return fmt.Sprintf("%016x%016x", g.rng.Uint64(), g.rng.Uint64())
}

// between returns a whole-millisecond duration uniformly in [lo, hi].
func (g *Generator) between(lo, hi time.Duration) time.Duration {
	ms := lo.Milliseconds() + g.rng.Int64N(hi.Milliseconds()-lo.Milliseconds()+1)
	return time.Duration(ms) * time.Millisecond
}

// logNormal returns a whole-millisecond duration with median m, clipped to [lo, hi].
func (g *Generator) logNormal(m, lo, hi time.Duration) time.Duration {
	v := float64(m.Milliseconds()) * math.Exp(0.8*g.rng.NormFloat64())
	ms := int64(v)
	ms = max(lo.Milliseconds(), min(hi.Milliseconds(), ms))
	return time.Duration(ms) * time.Millisecond
}

func (g *Generator) chance(p float64) bool { return g.rng.Float64() < p }

// threadBuilder accumulates one thread's deliveries.
type threadBuilder struct {
	g     *Generator
	org   *Org
	th    *Thread
	evSeq int
	out   []Delivery
}

func (b *threadBuilder) eventID() string {
	b.evSeq++
	return fmt.Sprintf("%s_%d", b.th.ThreadID, b.evSeq)
}

func (b *threadBuilder) send(at time.Time, action string, payload any, selfTimed bool) {
	g := b.g
	wid, ok := g.webhookID[b.org.ID+action]
	if !ok {
		wid = g.hex32()
		g.webhookID[b.org.ID+action] = wid
	}
	body, err := json.Marshal(envelope{WebhookID: wid, SecretKey: g.cfg.Secret, Action: action, OrganizationID: b.org.ID, Payload: payload, AdditionalData: json.RawMessage("{}")})
	if err != nil {
		panic(fmt.Sprintf("simulate: marshal %s: %v", action, err)) // only our own structs: cannot fail
	}
	d := Delivery{At: at, OrgID: b.org.ID, Action: action, ChatID: b.th.ChatID, Body: body}
	if selfTimed && g.chance(g.cfg.LateRate) {
		d.At = d.At.Add(g.between(3*time.Second, 30*time.Second))
		d.Late = true
	}
	b.out = append(b.out, d)
}

// change sends a state change (no server identity) of subject.
func (b *threadBuilder) change(at time.Time, action string, payload any, subject string) {
	b.send(at, action, payload, false)
	b.out[len(b.out)-1].subject = subject
}

func (b *threadBuilder) message(at time.Time, author string, isAgent bool, text string) event {
	ev := event{ID: b.eventID(), Type: "message", AuthorID: author, CreatedAt: ts(at), Visibility: "all", Text: text}
	b.th.Messages = append(b.th.Messages, Msg{At: at, IsAgent: isAgent})
	return ev
}

func (b *threadBuilder) incomingEvent(ev event, at time.Time) {
	b.send(at.Add(b.g.between(20*time.Millisecond, 400*time.Millisecond)), "incoming_event",
		incomingEvent{ChatID: b.th.ChatID, ThreadID: b.th.ThreadID, Event: ev}, true)
}

// Thread simulates one thread that starts at start and returns its ground
// truth and deliveries (in creation order; Late ones hold a later At).
func (g *Generator) Thread(start time.Time) (Thread, []Delivery) {
	start = start.Truncate(time.Millisecond)
	org := &g.orgs[g.rng.IntN(len(g.orgs))]
	oi := 0
	for i := range g.orgs {
		if &g.orgs[i] == org {
			oi = i
		}
	}
	cust := g.customerFor(oi, start)
	group := org.Groups[g.rng.IntN(len(org.Groups))]
	var eligible []*Agent
	for i := range org.Agents {
		for _, gid := range org.Agents[i].Groups {
			if gid == group.ID {
				eligible = append(eligible, &org.Agents[i])
			}
		}
	}
	pick := func(not string) *Agent {
		for {
			a := eligible[g.rng.IntN(len(eligible))]
			if a.ID != not || len(eligible) == 1 {
				return a
			}
		}
	}
	g.threadSeq++
	th := &Thread{
		OrgID: org.ID, ChatID: cust.ChatID, ThreadID: g.lcID(), CustomerID: cust.ID, Country: cust.Geo.CountryCode,
		Start: start, Groups: []uint32{group.ID}, Rating: -1,
	}
	b := &threadBuilder{g: g, org: org, th: th}

	th.Continuous = g.chance(0.08)
	th.FromGreeting = g.chance(0.15)
	th.Queued = g.chance(0.15)
	prechat := g.chance(0.7)
	agentStarted := !th.Queued && g.chance(0.05)
	missed := !th.Queued && g.chance(0.12)
	th.QueueLeft = th.Queued && g.chance(0.4)

	var agent *Agent
	if !th.Queued {
		agent = pick("")
		th.Agents = append(th.Agents, agent.ID)
	}

	// The events already in the thread when incoming_chat is sent.
	var initial []event
	if prechat {
		initial = append(initial, event{
			ID: b.eventID(), Type: "filled_form", AuthorID: cust.ID, CreatedAt: ts(start), Visibility: "all",
			Properties: map[string]any{"lc2": map[string]any{"form_type": "prechat"}},
			FormID:     "172604318822009341", FormType: "prechat",
			Fields: []formField{
				{Type: "name", ID: "172604318822001101", Label: "Your name", Answer: cust.Name},
				{Type: "radio", ID: "172604318822001103", Label: "What do you need help with?", Answer: formAnswer{ID: fmt.Sprint(1 + g.rng.IntN(3)), Label: []string{"Billing", "Sales", "Technical"}[g.rng.IntN(3)]}},
			},
		})
	}
	if agent != nil && !agentStarted && g.chance(0.8) {
		th.Welcome = true
		initial = append(initial, event{
			ID: b.eventID(), Type: "message", AuthorID: agent.ID, CreatedAt: ts(start.Add(400 * time.Millisecond)), Visibility: "all",
			Properties: map[string]any{"lc2": map[string]any{"welcome_message": true}}, Text: "Hello! How can I help you today?",
		})
	}
	t := start.Add(g.between(2*time.Second, 9*time.Second))
	var later []func() // the first customer message, when not inside incoming_chat
	if agentStarted {
		initial = append(initial, b.message(start.Add(time.Second), agent.ID, true, "Hi! Can I help you find anything?"))
	}
	firstInline := g.chance(0.6)
	firstMsg := b.message(t, cust.ID, false, customerLines[g.rng.IntN(len(customerLines))])
	if firstInline {
		initial = append(initial, firstMsg)
	} else {
		ft := t
		later = append(later, func() { b.incomingEvent(firstMsg, ft) })
	}
	last := start
	for _, ev := range initial {
		et, _ := time.Parse(time.RFC3339Nano, ev.CreatedAt)
		last = maxTime(last, et)
	}

	props := map[string]any{
		"routing": map[string]any{"continuous": th.Continuous, "idle": false, "unassigned": th.Queued, "start_url": "https://shop.example.com/", "referrer": "https://www.example.com/"},
		"source":  map[string]any{"client_id": "c5e4f61e1a6c3b1a7b8c9d0e1f2a3b4c"},
	}
	if th.FromGreeting {
		props["lc2"] = map[string]any{"greeting_id": fmt.Sprint(1 + g.rng.IntN(5)), "greeting_unique_id": g.hex32()[:20]}
	}
	users := []user{{ID: cust.ID, Type: "customer", Name: cust.Name, Present: true, Visit: &visit{StartedAt: ts(start.Add(-2 * time.Minute)), IP: "203.0.113.24", UserAgent: "Mozilla/5.0", Geolocation: cust.Geo}}}
	userIDs := []string{cust.ID}
	if agent != nil {
		users = append(users, user{ID: agent.ID, Type: "agent", Name: agent.Name, Email: agent.ID, Present: true, Visibility: "all"})
		userIDs = append(userIDs, agent.ID)
	}
	var q *queue
	if th.Queued {
		q = &queue{Position: 1 + g.rng.IntN(5), WaitTime: 30 + g.rng.IntN(240), QueuedAt: ts(start)}
	}
	ic := incomingChat{Chat: chat{
		ID: cust.ChatID, Users: users,
		Properties: map[string]any{"routing": map[string]any{"continuous": th.Continuous, "pinned": false}, "source": map[string]any{"client_id": "c5e4f61e1a6c3b1a7b8c9d0e1f2a3b4c"}},
		Access:     access{GroupIDs: []uint32{group.ID}},
		Thread: thread{ID: th.ThreadID, Active: true, UserIDs: userIDs, Events: initial, Properties: props,
			Access: access{GroupIDs: []uint32{group.ID}}, Queue: q, CreatedAt: ts(start),
			CustomerVisit: &visit{StartedAt: ts(start.Add(-2 * time.Minute)), IP: "203.0.113.24", UserAgent: "Mozilla/5.0", Geolocation: cust.Geo}},
	}}
	b.send(last.Add(g.between(50*time.Millisecond, 600*time.Millisecond)), "incoming_chat", ic, true)
	for _, f := range later {
		f()
	}
	t = maxTime(t, last)

	switch {
	case th.QueueLeft:
		wait := g.between(20*time.Second, 5*time.Minute)
		end := start.Add(wait)
		b.incomingEvent(event{ID: b.eventID(), Type: "system_message", CreatedAt: ts(end.Add(-time.Second)), Visibility: "all", SystemMessageType: "archived_customer_disconnected", Text: "Customer left the queue"}, end.Add(-time.Second))
		b.deactivate(end, "")
		return b.finish()
	case th.Queued:
		wait := g.between(10*time.Second, 4*time.Minute)
		agent = pick("")
		joined := start.Add(wait)
		b.change(joined, "user_added_to_chat", userAdded{ChatID: th.ChatID, ThreadID: th.ThreadID, User: user{ID: agent.ID, Type: "agent", Name: agent.Name, Email: agent.ID, Present: true, Visibility: "all"}, UserType: "agent", Reason: "assigned"}, memberSubject(th.ChatID, agent.ID))
		th.QueueWait = wait
		th.Agents = append(th.Agents, agent.ID)
		t = maxTime(t, joined)
	}

	if missed {
		// No agent ever answers: the customer tries again, the router closes it.
		if g.chance(0.5) {
			t = t.Add(g.between(20*time.Second, 90*time.Second))
			b.incomingEvent(b.message(t, cust.ID, false, "Hello? Is anyone there?"), t)
		}
		end := t.Add(g.between(time.Minute, 5*time.Minute))
		b.incomingEvent(event{ID: b.eventID(), Type: "system_message", CreatedAt: ts(end.Add(-time.Second)), Visibility: "all", SystemMessageType: "routing.archived_inactive", Text: "Chat archived due to inactivity"}, end.Add(-time.Second))
		b.deactivate(end, "")
		b.rateAndTag(end, false)
		return b.finish()
	}

	rounds := 1 + g.rng.IntN(6)
	transferAt := -1
	if rounds > 1 && g.chance(0.12) {
		transferAt = 1 + g.rng.IntN(rounds-1)
	}
	richAt := -1
	if g.chance(0.12) {
		richAt = g.rng.IntN(rounds)
	}
	rejoinAt := -1
	if rounds > 1 && g.chance(0.08) {
		rejoinAt = 1 + g.rng.IntN(rounds-1)
	}
	for r := 0; r < rounds; r++ {
		if r > 0 {
			// A new customer run of 1–3 messages.
			n := 1 + g.rng.IntN(3)
			for i := 0; i < n; i++ {
				t = t.Add(g.between(3*time.Second, 40*time.Second))
				b.incomingEvent(b.message(t, cust.ID, false, customerLines[g.rng.IntN(len(customerLines))]), t)
			}
		}
		if r == transferAt {
			t = b.transfer(t, org, agent, &agent)
		} else if r == rejoinAt {
			t = b.rejoin(t, agent)
		}
		t = t.Add(g.logNormal(35*time.Second, 3*time.Second, 10*time.Minute))
		if r == richAt {
			ev := event{ID: b.eventID(), Type: "rich_message", AuthorID: agent.ID, CreatedAt: ts(t), Visibility: "all", TemplateID: "quick_replies",
				Elements: []element{{Title: "Shall I refund the duplicate charge?", Buttons: []button{{Text: "Yes, please", Type: "message", Value: "Yes, please", PostbackID: "refund_yes", UserIDs: []string{}}, {Text: "No", Type: "message", Value: "No", PostbackID: "refund_no", UserIDs: []string{}}}}}}
			th.Messages = append(th.Messages, Msg{At: t, IsAgent: true})
			b.incomingEvent(ev, t)
			t = t.Add(g.between(3*time.Second, 20*time.Second))
			b.change(t, "incoming_rich_message_postback", richPostback{UserID: cust.ID, ChatID: th.ChatID, ThreadID: th.ThreadID, EventID: ev.ID, Postback: postbackBody{ID: "refund_yes", Toggled: true, ButtonType: "message", ButtonValue: "Yes, please"}},
				"postback|"+th.ChatID+"|"+ev.ID+"|"+cust.ID+"|refund_yes")
			th.Postback = true
			t = t.Add(g.between(200*time.Millisecond, 900*time.Millisecond))
			b.incomingEvent(b.message(t, cust.ID, false, "Yes, please"), t)
			t = t.Add(g.logNormal(20*time.Second, 2*time.Second, 5*time.Minute))
		}
		n := 1 + g.rng.IntN(2)
		for i := 0; i < n; i++ {
			if i > 0 {
				t = t.Add(g.between(2*time.Second, 15*time.Second))
			}
			if g.chance(0.05) {
				ev := event{ID: b.eventID(), Type: "file", AuthorID: agent.ID, CreatedAt: ts(t), Visibility: "all", Name: "invoice.pdf", URL: "https://cdn.example.com/invoice.pdf", ContentType: "application/pdf"}
				th.Messages = append(th.Messages, Msg{At: t, IsAgent: true})
				b.incomingEvent(ev, t)
				continue
			}
			b.incomingEvent(b.message(t, agent.ID, true, agentLines[g.rng.IntN(len(agentLines))]), t)
		}
	}
	end := t.Add(g.between(10*time.Second, 3*time.Minute))
	b.deactivate(end, agent.ID)
	b.rateAndTag(end, true)
	return b.finish()
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// transfer moves the chat to another group and agent at t.
func (b *threadBuilder) transfer(t time.Time, org *Org, from *Agent, cur **Agent) time.Time {
	g := b.g
	th := b.th
	var to *Agent
	var toGroup uint32
	for tries := 0; tries < 20; tries++ {
		a := &org.Agents[g.rng.IntN(len(org.Agents))]
		if a.ID == from.ID {
			continue
		}
		to = a
		toGroup = a.Groups[len(a.Groups)-1]
		break
	}
	if to == nil {
		return t
	}
	t = t.Add(g.between(5*time.Second, 30*time.Second))
	b.change(t, "chat_transferred", chatTransferred{ChatID: th.ChatID, ThreadID: th.ThreadID, RequesterID: from.ID, Reason: "manual", TransferredTo: transferredTo{GroupIDs: []uint32{toGroup}, AgentIDs: []string{to.ID}}}, "transfer|"+th.ThreadID)
	b.change(t, "chat_access_updated", chatAccessUpdated{ID: th.ChatID, Access: access{GroupIDs: []uint32{toGroup}}}, "access|"+th.ChatID)
	t = t.Add(time.Second)
	b.change(t, "user_added_to_chat", userAdded{ChatID: th.ChatID, ThreadID: th.ThreadID, User: user{ID: to.ID, Type: "agent", Name: to.Name, Email: to.ID, Present: true, Visibility: "all"}, UserType: "agent", Reason: "manual", RequesterID: from.ID}, memberSubject(th.ChatID, to.ID))
	t = t.Add(time.Second)
	b.change(t, "user_removed_from_chat", userRemoved{ChatID: th.ChatID, ThreadID: th.ThreadID, UserID: from.ID, UserType: "agent", Reason: "manual", RequesterID: from.ID}, memberSubject(th.ChatID, from.ID))
	th.Groups = appendUniq32(th.Groups, toGroup)
	th.Agents = appendUniq(th.Agents, to.ID)
	th.Transfer = true
	*cur = to
	return t
}

func memberSubject(chatID, userID string) string { return "member|" + chatID + "|" + userID }

// rejoin removes the agent from the chat at about t and adds them back
// seconds to minutes later (they left by mistake, or a supervisor moved
// them out and back): the membership flips removed → added, and the agent
// still took part.
func (b *threadBuilder) rejoin(t time.Time, a *Agent) time.Time {
	g := b.g
	th := b.th
	t = t.Add(g.between(time.Second, 5*time.Second))
	b.change(t, "user_removed_from_chat", userRemoved{ChatID: th.ChatID, ThreadID: th.ThreadID, UserID: a.ID, UserType: "agent", Reason: "manual", RequesterID: a.ID}, memberSubject(th.ChatID, a.ID))
	t = t.Add(g.logNormal(30*time.Second, 2*time.Second, 3*time.Minute))
	b.change(t, "user_added_to_chat", userAdded{ChatID: th.ChatID, ThreadID: th.ThreadID, User: user{ID: a.ID, Type: "agent", Name: a.Name, Email: a.ID, Present: true, Visibility: "all"}, UserType: "agent", Reason: "manual", RequesterID: a.ID}, memberSubject(th.ChatID, a.ID))
	th.Rejoined = true
	return t
}

func (b *threadBuilder) deactivate(end time.Time, by string) {
	b.th.End = end
	b.send(end, "chat_deactivated", chatDeactivated{ChatID: b.th.ChatID, ThreadID: b.th.ThreadID, UserID: by}, false)
}

// rateAndTag adds tags (some added then removed again, a few of those
// added back) and, for answered chats, a rating: given on the thread or on
// the chat, and sometimes changed, changed back, or deleted (and given
// again), seconds to minutes apart.
func (b *threadBuilder) rateAndTag(end time.Time, answered bool) {
	g := b.g
	th := b.th
	if g.chance(0.6) {
		n := 1 + g.rng.IntN(2)
		at := end.Add(-g.between(time.Second, 8*time.Second))
		for i := 0; i < n; i++ {
			tag := tagNames[g.rng.IntN(len(tagNames))]
			if contains(th.Tags, tag) {
				continue
			}
			th.Tags = append(th.Tags, tag)
			b.tag(at.Add(time.Duration(i)*time.Second), "thread_tagged", tag)
		}
		if g.chance(0.2) {
			// A tag added by mistake and removed; sometimes added back.
			tag := tagNames[g.rng.IntN(len(tagNames))]
			if !contains(th.Tags, tag) {
				t := at.Add(3 * time.Second)
				b.tag(t, "thread_tagged", tag)
				t = t.Add(g.logNormal(15*time.Second, 2*time.Second, 3*time.Minute))
				b.tag(t, "thread_untagged", tag)
				if g.chance(0.4) {
					t = t.Add(g.logNormal(20*time.Second, 2*time.Second, 3*time.Minute))
					b.tag(t, "thread_tagged", tag)
					th.Tags = append(th.Tags, tag)
				}
			}
		}
	}
	if !answered || !g.chance(0.35) {
		return
	}
	score := 1
	if g.chance(0.25) {
		score = 0
	}
	comment := ""
	if g.chance(0.5) {
		comment = []string{"Quick and friendly, thanks!", "Solved my problem."}[g.rng.IntN(2)]
		if score == 0 {
			comment = []string{"Took too long.", "Not helpful."}[g.rng.IntN(2)]
		}
	}
	// The scores in force one after the other (-1: deleted).
	steps := []int{score}
	switch r := g.rng.Float64(); {
	case r < 0.07: // the customer changes their mind
		steps = append(steps, 1-score)
	case r < 0.12: // ... and back again
		steps = append(steps, 1-score, score)
	case r < 0.17: // deleted, then rated again
		steps = append(steps, -1, g.rng.IntN(2))
	case r < 0.19: // deleted
		steps = append(steps, -1)
	}
	onChat := g.chance(0.3)
	last := map[bool]int{} // per channel (on the chat or not), the score it was last sent
	at := end.Add(g.between(5*time.Second, 60*time.Second))
	for i, sc := range steps {
		if i > 0 {
			at = at.Add(g.logNormal(40*time.Second, 3*time.Second, 4*time.Minute))
			// Sometimes the change comes the other way (rated on the
			// thread, changed on the chat) — unless that way's last value
			// is this one: a change never repeats its subject's state.
			if v, used := last[!onChat]; g.chance(0.25) && (!used || v != sc) {
				onChat = !onChat
			}
			comment = ""
		}
		b.rate(at, sc, comment, onChat)
		last[onChat] = sc
		th.Ratings = append(th.Ratings, RatingChange{At: at, Score: sc, OnChat: onChat})
		th.Rating, th.Comment = sc, comment
	}
}

func (b *threadBuilder) tag(at time.Time, action, tag string) {
	th := b.th
	b.change(at, action, threadTag{ChatID: th.ChatID, ThreadID: th.ThreadID, Tag: tag}, "tag|"+th.ThreadID+"|"+tag)
}

// rate sends one rating change (score -1: deleted) on the thread or on the
// chat. The rating's properties are one subject per thread or chat here
// (coarser than per property, so retries stay before any change of them).
func (b *threadBuilder) rate(at time.Time, score int, comment string, onChat bool) {
	th := b.th
	subject := "rating|thread|" + th.ThreadID
	if onChat {
		subject = "rating|chat|" + th.ChatID
	}
	if score < 0 {
		del := map[string][]string{"rating": {"score", "comment"}}
		if onChat {
			b.change(at, "chat_properties_deleted", chatPropertiesDeleted{ChatID: th.ChatID, Properties: del}, subject)
		} else {
			b.change(at, "thread_properties_deleted", threadPropertiesDeleted{ChatID: th.ChatID, ThreadID: th.ThreadID, Properties: del}, subject)
		}
		return
	}
	rating := map[string]any{"score": score}
	if comment != "" {
		rating["comment"] = comment
	}
	props := map[string]any{"rating": rating}
	if onChat {
		b.change(at, "chat_properties_updated", chatProperties{ChatID: th.ChatID, Properties: props}, subject)
	} else {
		b.change(at, "thread_properties_updated", threadProperties{ChatID: th.ChatID, ThreadID: th.ThreadID, Properties: props}, subject)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// finish adds the sender's retries, marks the chat busy until chatCooldown
// after its last delivery and returns the ground truth.
func (b *threadBuilder) finish() (Thread, []Delivery) {
	out := b.g.withRetries(b.out, nil)
	last := b.th.Start
	for _, d := range out {
		last = maxTime(last, d.At)
	}
	b.g.chatFree[b.th.ChatID] = last.Add(chatCooldown)
	return *b.th, out
}

// withRetries appends a retry (same body, Retry set) for RetryRate of the
// deliveries, 5–55 s after the first attempt. A state change's retry comes
// before the next change of its subject (in, or next[subject] when that
// change is not in in): LiveChat re-sends only a webhook that was not
// delivered, and a retry overtaken by a later change would be a change
// back, not a retry. Without room for that (the next change comes within
// about half a second) there is no retry.
func (g *Generator) withRetries(in []Delivery, next map[string]time.Time) []Delivery {
	// For each state change, when its subject changes next.
	bySubject := map[string][]int{}
	for i := range in {
		if s := in[i].subject; s != "" {
			bySubject[s] = append(bySubject[s], i)
		}
	}
	until := make([]time.Time, len(in))
	for s, idx := range bySubject {
		sort.SliceStable(idx, func(a, b int) bool { return in[idx[a]].At.Before(in[idx[b]].At) })
		for k, i := range idx {
			if k+1 < len(idx) {
				until[i] = in[idx[k+1]].At
			} else if t, ok := next[s]; ok {
				until[i] = t
			}
		}
	}
	out := in
	for i := range in {
		if !g.chance(g.cfg.RetryRate) {
			continue
		}
		lo, hi := 5*time.Second, 55*time.Second
		if !until[i].IsZero() {
			hi = min(hi, until[i].Sub(in[i].At)-250*time.Millisecond)
			if hi < 250*time.Millisecond {
				continue
			}
			lo = min(lo, hi/2)
		}
		d := in[i]
		d.At = d.At.Add(g.between(lo, hi))
		d.Retry, d.Late = true, false
		out = append(out, d)
	}
	return out
}

// agentStatus is where an agent's routing status stands between Statuses
// calls: the change due next.
type agentStatus struct {
	next      time.Time
	accepting bool // the status set at next
}

// Statuses simulates routing-status changes of every agent in [from, to):
// agents alternate between accepting chats (StatusEvery, median) and not
// accepting them; half of the not-accepting spells are short breaks of
// seconds to minutes. Consecutive calls continue each agent's sequence.
// Both spellings LiveChat uses are sent.
func (g *Generator) Statuses(from, to time.Time) ([]StatusChange, []Delivery) {
	var changes []StatusChange
	var out []Delivery
	long := func() time.Duration { return g.logNormal(g.cfg.StatusEvery, time.Minute, 6*g.cfg.StatusEvery) }
	for oi := range g.orgs {
		org := &g.orgs[oi]
		b := &threadBuilder{g: g, org: org, th: &Thread{}}
		next := map[string]time.Time{}
		for _, a := range org.Agents {
			st := g.status[org.ID+"|"+a.ID]
			if st == nil {
				st = &agentStatus{accepting: g.chance(0.7), next: from.Add(g.between(0, g.cfg.StatusEvery/4)).Truncate(time.Millisecond)}
				g.status[org.ID+"|"+a.ID] = st
			}
			subject := "status|" + a.ID
			for st.next.Before(to) {
				at, accepting := st.next, st.accepting
				if !at.Before(from) {
					status := "not accepting chats"
					if accepting {
						status = "accepting chats"
					}
					if g.chance(0.3) {
						status = map[bool]string{true: "accepting_chats", false: "not_accepting_chats"}[accepting]
					}
					b.change(at, "routing_status_set", routingStatus{AgentID: a.ID, Status: status}, subject)
					changes = append(changes, StatusChange{OrgID: org.ID, AgentID: a.ID, At: at, Accepting: accepting})
				}
				d := long()
				if !accepting && g.chance(0.5) {
					// A break: back to accepting within seconds to minutes.
					d = g.logNormal(30*time.Second, 2*time.Second, 5*time.Minute)
				}
				st.next, st.accepting = at.Add(d), !accepting
			}
			next[subject] = st.next
		}
		for i := range b.out {
			b.out[i].ChatID = ""
		}
		out = append(out, g.withRetries(b.out, next)...)
	}
	return changes, out
}

// Dataset is a finished simulation: the world, the ground truth and every
// delivery sorted by time.
type Dataset struct {
	Orgs       []Org
	From, To   time.Time
	Threads    []Thread
	Statuses   []StatusChange
	Deliveries []Delivery
}

// Generate simulates n threads starting uniformly in [from, from+span) plus
// the agents' routing-status changes over the same span.
func Generate(cfg Config, from time.Time, span time.Duration, n int) (*Dataset, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	from = from.Truncate(time.Millisecond)
	ds := &Dataset{Orgs: g.orgs, From: from, To: from.Add(span)}
	ds.Statuses, ds.Deliveries = g.Statuses(ds.From, ds.To)
	starts := make([]time.Time, n)
	for i := range starts {
		starts[i] = from.Add(time.Duration(g.rng.Int64N(span.Milliseconds())) * time.Millisecond)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	for _, s := range starts {
		th, ds2 := g.Thread(s)
		ds.Threads = append(ds.Threads, th)
		ds.Deliveries = append(ds.Deliveries, ds2...)
	}
	sort.SliceStable(ds.Deliveries, func(i, j int) bool { return ds.Deliveries[i].At.Before(ds.Deliveries[j].At) })
	return ds, nil
}

// Package simulate generates realistic, deterministic LiveChat v3.6 webhook
// traffic: many organizations with agents, groups and customers; chats with
// pre-chat forms, greetings, welcome messages, conversations with realistic
// timings, transfers, queues and abandonment, missed chats, tags, ratings,
// routing-status changes and rich-message postbacks. State flips back and
// forth as they do in real use, seconds to minutes apart: agents' status
// breaks (accepting, not accepting, accepting again), tags removed and
// added again, ratings changed and changed back or deleted and given again
// (on the thread or on the chat), agents removed from a chat and added
// back. It also plays the sender: some deliveries are retried with the same
// body within about a minute and some arrive out of order, as LiveChat's do.
//
// A retry of a state change (a webhook without a server identity: status,
// tag, property, membership, access, transfer) is always delivered before
// the next change of the same subject, as LiveChat re-sends only what was
// not delivered; and no genuine change repeats the state its subject is
// already in. So a change and its retries are told apart by content and
// order alone (TestRetriesAreTheOnlyRepeats checks the traffic against that
// rule), and every genuine change, flips included, is an event.
//
// The same seed always gives the same traffic, and the generator keeps the
// ground truth of what it simulated (threads, their messages, ratings...), so
// Expect can compute the metric values the dashboards must show without
// looking at ClickHouse: the tests compare the two.
//
// Times of webhooks that carry no timestamp of their own (chat_deactivated,
// user_added_to_chat, thread_tagged, routing_status_set, ...) are the time the
// pipeline receives them; the ground truth therefore records the delivery
// time of the first attempt for those, exactly as the pipeline will see it.
// Every simulated time is a whole millisecond so that no rounding separates
// the two computations.
package simulate

import (
	"time"
)

// Org is one simulated LiveChat organization (tenant).
type Org struct {
	ID     string
	Agents []Agent
	Groups []Group
}

// Agent is an agent of an organization; IDs are login e-mails as in LiveChat.
type Agent struct {
	ID     string
	Name   string
	Groups []uint32
}

// Group is a LiveChat group; group 0 is "General" (all agents).
type Group struct {
	ID   uint32
	Name string
}

// Msg is one non-welcome customer or agent message (message, file or
// rich_message event) of a thread: what response times are computed from.
type Msg struct {
	At      time.Time
	IsAgent bool
}

// Thread is the ground truth of one simulated thread ("chat" in reports).
type Thread struct {
	OrgID      string
	ChatID     string
	ThreadID   string
	CustomerID string
	Country    string
	// Start is thread.created_at; End the receive time of chat_deactivated.
	Start, End time.Time
	// Groups holds the initial group then transfer targets (distinct).
	Groups []uint32
	// Agents who took part: the assigned agent, agents added later, transfer
	// targets (distinct, in order of arrival).
	Agents       []string
	Continuous   bool
	FromGreeting bool
	// Queued threads waited in the queue; QueueLeft ones left before an agent
	// joined (abandoned), the others waited QueueWait.
	Queued    bool
	QueueLeft bool
	QueueWait time.Duration
	// Messages are the non-welcome customer/agent messages in time order.
	Messages []Msg
	Welcome  bool
	Tags     []string // final tag set
	// Rating is the rating in force at the end: -1 none (or deleted), 0
	// bad, 1 good; the last of Ratings by time.
	Rating int
	// Comment is the comment of the last rating webhook ("" when it had
	// none, or was a deletion).
	Comment string
	// Ratings are every rating change in time order, on the thread
	// (thread_properties_*) or on the chat (chat_properties_*, no thread:
	// it counts for the chat's current thread, this one).
	Ratings []RatingChange
	// Rejoined: an agent was removed from the chat and added back.
	Rejoined bool
	Postback bool
	Transfer bool
}

// Missed reports a thread without any agent message (welcome excluded).
func (t *Thread) Missed() bool {
	for _, m := range t.Messages {
		if m.IsAgent {
			return false
		}
	}
	return true
}

// RatingChange is one rating webhook as the pipeline receives it.
type RatingChange struct {
	At time.Time
	// Score is 1 good, 0 bad, -1 deleted (*_properties_deleted).
	Score int
	// OnChat: sent as chat_properties_* (no thread id) rather than
	// thread_properties_*.
	OnChat bool
}

// StatusChange is one routing_status_set as the pipeline receives it.
type StatusChange struct {
	OrgID, AgentID string
	At             time.Time
	Accepting      bool
}

// Delivery is one HTTP POST of a webhook body as the sender makes it.
type Delivery struct {
	// At is when the sender posts it (the pipeline's received time).
	At     time.Time
	OrgID  string
	Action string
	ChatID string
	Body   []byte
	// Retry marks a repeated delivery of an earlier body (same bytes).
	Retry bool
	// Late marks a delivery held back so that it arrives after later ones.
	Late bool
	// subject names what a state change (a webhook without a server
	// identity) changes, "" for the others: a retry of it is delivered
	// before the next change of the same subject.
	subject string
}

package processor

import (
	"strings"
	"sync"
)

// UserCache remembers the type of each user of a chat, learnt from
// incoming_chat users[] and user_added_to_chat, so events (whose payload
// does not say who wrote them) get author_type customer/agent/bot. It is
// bounded: two generations of at most max chats each; when the current one
// is full the older is dropped (recently used chats survive). A chat not in
// the cache falls back to ShapeType. Safe for concurrent use.
type UserCache struct {
	mu       sync.Mutex
	max      int
	cur, old map[string]map[string]string
}

// NewUserCache keeps about max..2*max chats (default 100 000 when max <= 0).
func NewUserCache(max int) *UserCache {
	if max <= 0 {
		max = 100_000
	}
	return &UserCache{max: max, cur: map[string]map[string]string{}}
}

func (c *UserCache) learn(org, chatID, userID, typ string) {
	if c == nil || chatID == "" || userID == "" || typ == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := org + "/" + chatID
	m := c.get(k)
	if m == nil {
		if len(c.cur) >= c.max {
			c.old, c.cur = c.cur, make(map[string]map[string]string, c.max/4)
		}
		m = map[string]string{}
		c.cur[k] = m
	}
	// Clone: decoded strings point into the whole record body, which a
	// cache entry must not keep alive.
	m[strings.Clone(userID)] = internType(typ)
}

func internType(t string) string {
	switch t {
	case "agent":
		return "agent"
	case "customer":
		return "customer"
	case "bot":
		return "bot"
	}
	return strings.Clone(t)
}

// get returns the chat's map, promoting it from the old generation.
func (c *UserCache) get(k string) map[string]string {
	if m, ok := c.cur[k]; ok {
		return m
	}
	if m, ok := c.old[k]; ok {
		delete(c.old, k)
		c.cur[k] = m
		return m
	}
	return nil
}

// authorType resolves a user of a chat: "system" without a user, the
// learnt type (an agent with a bot-shaped ID is a bot: bots appear as
// agents in chats), else the ID shape, else "".
func (c *UserCache) authorType(org, chatID, userID string) string {
	if userID == "" {
		return "system"
	}
	shape := ShapeType(userID)
	if c != nil {
		c.mu.Lock()
		typ := c.get(org + "/" + chatID)[userID]
		c.mu.Unlock()
		if typ == "agent" && shape == "bot" {
			return "bot"
		}
		if typ != "" {
			return typ
		}
	}
	return shape
}

package ops

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// GroupResetOptions say where ResetGroup moves the group.
type GroupResetOptions struct {
	Group, Topic string
	// To is "earliest", "latest" or a time (ParseTime): the first record
	// at or after it (Kafka's offsets-by-time).
	To     string
	Force  bool
	DryRun bool
}

// PartitionReset is one partition's move.
type PartitionReset struct {
	Partition int32 `json:"partition"`
	// From is the committed offset before (-1: none).
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Records is To - From from the group's point of view: negative means
	// that many records are read again.
	Records int64 `json:"records"`
}

// GroupReset is what ResetGroup did (or would do).
type GroupReset struct {
	Group      string           `json:"group"`
	Topic      string           `json:"topic"`
	To         string           `json:"to"`
	Members    int              `json:"active_members"`
	Partitions []PartitionReset `json:"partitions"`
	DryRun     bool             `json:"dry_run"`
}

// ResetGroup commits new offsets for the group on topic. It refuses while
// the group has members (processors running) unless Force: a live member
// would commit over the reset with its next batch, and Kafka itself
// refuses commits from outside a group that has members, so Force only
// helps when the listed members are gone (a session not expired yet).
// Moving back is safe: the processor drops what is already stored.
func ResetGroup(ctx context.Context, cl *kgo.Client, o GroupResetOptions) (*GroupReset, error) {
	adm := kadm.NewClient(cl)
	groups, err := adm.DescribeGroups(ctx, o.Group)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe group %s: %w", o.Group, err)
	}
	res := &GroupReset{Group: o.Group, Topic: o.Topic, To: o.To, DryRun: o.DryRun}
	if g, ok := groups[o.Group]; ok {
		res.Members = len(g.Members)
		if res.Members > 0 && !o.Force {
			var who []string
			for _, m := range g.Members {
				who = append(who, m.ClientID+"@"+m.ClientHost)
			}
			return nil, fmt.Errorf("group %s has %d active member(s) (%s): stop the processors first, or --force if they are gone", o.Group, res.Members, strings.Join(who, ", "))
		}
	}
	var target Offsets
	switch o.To {
	case "earliest":
		target, err = StartOffsets(ctx, adm, o.Topic)
	case "latest":
		target, err = EndOffsets(ctx, adm, o.Topic)
	default:
		var t time.Time
		if t, err = ParseTime(o.To, time.Now()); err != nil {
			return nil, fmt.Errorf("--to %q: want earliest, latest or a time: %w", o.To, err)
		}
		target, err = OffsetsAfter(ctx, adm, o.Topic, t)
	}
	if err != nil {
		return nil, err
	}
	before, err := Committed(ctx, adm, o.Group, o.Topic)
	if err != nil {
		return nil, err
	}
	commit := kadm.Offsets{}
	for _, p := range target.Partitions() {
		from, ok := before[p]
		if !ok {
			from = -1
		}
		pr := PartitionReset{Partition: p, From: from, To: target[p]}
		if from >= 0 {
			pr.Records = target[p] - from
		}
		res.Partitions = append(res.Partitions, pr)
		commit.Add(kadm.Offset{Topic: o.Topic, Partition: p, At: target[p], LeaderEpoch: -1})
	}
	if o.DryRun {
		return res, nil
	}
	resp, err := adm.CommitOffsets(ctx, o.Group, commit)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: commit offsets of group %s: %w (Kafka refuses offset changes while the group has live members: stop the processors)", o.Group, err)
	}
	return res, nil
}

// ParseTime reads an operator's time: RFC 3339 ("2026-11-27T10:00:00Z"),
// a date-time without zone taken as UTC ("2026-11-27 10:00", "2026-11-27"),
// Unix milliseconds, or a duration back from now ("2h" = two hours ago).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UTC(), nil
	}
	var ms int64
	if _, err := fmt.Sscanf(s, "%d", &ms); err == nil && fmt.Sprint(ms) == s && ms > 1e11 {
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, YYYY-MM-DD[ HH:MM[:SS]] UTC, Unix ms, or a duration ago like 2h)", s)
}

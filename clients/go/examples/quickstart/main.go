// Command quickstart walks through Baton with the Go client: a planner agent opens a session,
// appends context while a follower streams it, and hands the work off to a coder agent, which
// sees the handoff in its inbox, accepts it and reads the context package.
//
//	go run ./examples/quickstart            # BATON_TARGET, default localhost:50051
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	baton "github.com/baton-dev/baton/clients/go"
	"github.com/baton-dev/baton/clients/go/batonv1"
)

func main() {
	target := os.Getenv("BATON_TARGET")
	if target == "" {
		target = "localhost:50051"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, target); err != nil {
		log.Fatal(err)
	}
}

func text(author, s string) *batonv1.NewEntry {
	return &batonv1.NewEntry{Kind: batonv1.EntryKind_ENTRY_KIND_MESSAGE, Role: "assistant", Author: author,
		Content: &batonv1.NewEntry_Text{Text: s}}
}

func run(ctx context.Context, target string) error {
	planner, err := baton.Dial(ctx, target, baton.WithTenant("quickstart"))
	if err != nil {
		return err
	}
	defer planner.Close()

	// 1. The planner opens a session (the server generates its key).
	s, err := planner.CreateSession(ctx, &batonv1.CreateSessionRequest{Agent: "planner"})
	if err != nil {
		return err
	}
	fmt.Println("session:", s.GetSessionKey())

	// 2. A follower streams the session while the planner appends.
	followed := make(chan struct{})
	fctx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	go func() {
		defer close(followed)
		for e, err := range planner.StreamEntries(fctx, &batonv1.StreamEntriesRequest{SessionKey: s.GetSessionKey(), Follow: true}) {
			if err != nil {
				return // cancelled below
			}
			fmt.Printf("followed #%d %s: %s\n", e.GetSeq(), e.GetAuthor(), e.GetText())
			if e.GetSeq() == 3 {
				return
			}
		}
	}()
	resp, err := planner.AppendEntries(ctx, &batonv1.AppendEntriesRequest{SessionKey: s.GetSessionKey(), Entries: []*batonv1.NewEntry{
		text("planner", "Goal: move the orders table to the new schema."),
		text("planner", "Done: the migration script is written and reviewed."),
		text("planner", "Left: run the backfill and switch reads over."),
	}})
	if err != nil {
		return err
	}
	fmt.Printf("appended #%d..#%d\n", resp.GetFirstSeq(), resp.GetLastSeq())
	<-followed

	// 3. The planner hands the work off to the coder.
	h, err := planner.RequestHandoff(ctx, &batonv1.RequestHandoffRequest{
		SessionKey: s.GetSessionKey(), FromAgent: "planner", ToAgent: "coder",
		Type: batonv1.HandoffType_HANDOFF_TYPE_FULL_HANDOFF, Instructions: "Run the backfill, then switch reads.",
	})
	if err != nil {
		return err
	}
	fmt.Println("handoff requested:", h.GetHandoffId())

	// 4. The coder, with its own client, finds it in its inbox, accepts it and reads the
	// context package: the summary first, then the entries.
	coder, err := baton.Dial(ctx, target, baton.WithTenant("quickstart"))
	if err != nil {
		return err
	}
	defer coder.Close()
	wctx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	for ev, err := range coder.WatchHandoffs(wctx, &batonv1.WatchHandoffsRequest{Agent: "coder"}) {
		if err != nil {
			return err
		}
		if ev.GetHandoff().GetHandoffId() == h.GetHandoffId() && ev.GetType() == batonv1.HandoffEventType_HANDOFF_EVENT_TYPE_CREATED {
			fmt.Println("coder's inbox:", ev.GetHandoff().GetInstructions())
			break
		}
	}
	accepted, err := coder.AcceptHandoff(ctx, &batonv1.AcceptHandoffRequest{HandoffId: h.GetHandoffId(), Agent: "coder"})
	if err != nil {
		return err
	}
	fmt.Println("accepted:", accepted.GetStatus())
	for e, err := range coder.StreamHandoffContext(ctx, &batonv1.StreamHandoffContextRequest{HandoffId: h.GetHandoffId()}) {
		if err != nil {
			return err
		}
		fmt.Printf("context #%d [%s]: %s\n", e.GetSeq(), e.GetKind(), e.GetText())
	}
	now, err := coder.GetSession(ctx, &batonv1.GetSessionRequest{SessionKey: s.GetSessionKey()})
	if err != nil {
		return err
	}
	fmt.Println("session owner:", now.GetOwner())
	return nil
}

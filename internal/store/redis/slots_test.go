package redis

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

func TestSlot(t *testing.T) {
	// The Redis Cluster specification's test vector: CRC16 of "123456789"
	// is 0x31C3.
	if got := Slot("123456789"); got != 0x31C3 {
		t.Fatalf("Slot(123456789) = %#x, want 0x31c3", got)
	}
	tags := ClusterSpreadTags()
	if len(tags) != SpreadTags {
		t.Fatalf("%d tags", len(tags))
	}
	for i, tag := range tags {
		if r := int(Slot(tag)) / (clusterSlots / SpreadTags); r != i {
			t.Errorf("tag %q: slot %d is in range %d, want %d", tag, Slot(tag), r, i)
		}
	}
}

// The slots agree with a real Cluster's, and every master of a three-master
// cluster holds some of the tags.
func TestClusterSpreadTags(t *testing.T) {
	addrs := cluster(t)
	ctx := context.Background()
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	for _, tag := range ClusterSpreadTags() {
		key := "twostep:k:config:instance:{" + tag + "}"
		got, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if uint16(got) != Slot(tag) {
			t.Fatalf("%s: the cluster says slot %d, Slot says %d", key, got, Slot(tag))
		}
	}
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		held := 0
		for _, tag := range ClusterSpreadTags() {
			s := int64(Slot(tag))
			for _, r := range sh.Slots {
				if s >= r.Start && s <= r.End {
					held++
				}
			}
		}
		if len(sh.Slots) > 0 && held == 0 {
			t.Fatalf("a master with slots %v holds none of the tags", sh.Slots)
		}
	}
}

package redis

import "strconv"

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// SpreadTags is the number of tags ClusterSpreadTags returns.
const SpreadTags = 16

// ClusterSpreadTags returns SpreadTags hash tags whose Cluster slots fall one
// in each of SpreadTags equal ranges of the slots, in order: a record written
// under every tag (key + "{" + tag + "}") has a copy on every master that
// serves a run of at least 16384/SpreadTags consecutive slots, as every
// master of an evenly split cluster of up to SpreadTags masters does.
func ClusterSpreadTags() []string {
	return spreadTags[:]
}

var spreadTags = func() (tags [SpreadTags]string) {
	width := clusterSlots / SpreadTags
	found := 0
	for i := 0; found < SpreadTags; i++ {
		t := strconv.Itoa(i)
		r := int(Slot(t)) / width
		if tags[r] == "" {
			tags[r] = t
			found++
		}
	}
	return tags
}()

// Slot is the Cluster hash slot of a key with no hash tag (or of a tag):
// CRC16 (XMODEM) modulo 16384, as the Redis Cluster specification defines.
func Slot(key string) uint16 {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % clusterSlots
}

// IsCluster reports whether o names a Redis Cluster (as New reads it).
func (o Options) IsCluster() bool {
	return o.MasterName == "" && (len(o.Addrs) > 1 || o.Cluster)
}

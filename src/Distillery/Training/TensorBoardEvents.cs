namespace Distillery.Training;

/// <summary>
/// Reads and trims TensorBoard event files (<c>events.out.tfevents.*</c>), so a resumed run does not log the steps after
/// its checkpoint twice. A file is a sequence of TFRecords: <c>u64 length, u32 masked CRC of the length, payload,
/// u32 masked CRC of the payload</c>; the payload is a <c>tensorboard.Event</c> protobuf whose field 2 is the step and
/// field 5 the summary (<c>Summary.value[].tag</c>). Records are kept byte for byte, so no CRC is recomputed.
/// </summary>
public static class TensorBoardEvents
{
    /// <summary>One record: its step, the tag of its first summary value (null for the file-version event), its bytes.</summary>
    public readonly record struct Record(long Step, string? Tag, byte[] Bytes);

    /// <summary>
    /// The records of one event file, in order. A record cut short at the end (a kill while it was written) is left out;
    /// TensorBoard ignores it too.
    /// </summary>
    public static List<Record> Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var records = new List<Record>();
        int at = 0;
        while (at + 12 <= bytes.Length)
        {
            long length = BitConverter.ToInt64(bytes, at);
            if (length < 0 || at + 12 + length + 4 > bytes.Length) break;
            var payload = bytes.AsSpan(at + 12, (int)length);
            var (step, tag) = StepAndTag(payload);
            records.Add(new Record(step, tag, bytes.AsSpan(at, 12 + (int)length + 4).ToArray()));
            at += 12 + (int)length + 4;
        }
        return records;
    }

    /// <summary>
    /// Removes, from every event file in <paramref name="dir"/>, the records of steps after <paramref name="step"/>
    /// (the file-version record has step 0 and stays). Each changed file is rewritten atomically.
    /// </summary>
    public static void DropAfter(string dir, int step)
    {
        if (!Directory.Exists(dir)) return;
        foreach (var file in Directory.GetFiles(dir, "events.out.tfevents.*"))
        {
            List<Record> records;
            try { records = Read(file); }
            catch (InvalidDataException e) { throw new InvalidDataException($"{file}: {e.Message}; remove the file to resume"); }
            var kept = records.Where(r => r.Step <= step).ToList();
            if (kept.Count == records.Count && kept.Sum(r => r.Bytes.LongLength) == new FileInfo(file).Length) continue;
            AtomicFile.Write(file, s => { foreach (var r in kept) s.Write(r.Bytes); });
        }
    }

    // Event: 1 wall_time (fixed64), 2 step (varint), 5 summary (message); Summary: 1 value (message); Value: 1 tag (string).
    static (long Step, string? Tag) StepAndTag(ReadOnlySpan<byte> evnt)
    {
        long step = 0;
        string? tag = null;
        foreach (var (field, wire, value, bytes) in Fields(evnt.ToArray()))
        {
            if (field == 2 && wire == 0) step = value;
            else if (field == 5 && wire == 2 && tag == null)
                foreach (var (f, w, _, summaryValue) in Fields(bytes!))
                    if (f == 1 && w == 2)
                    {
                        foreach (var (g, x, _, text) in Fields(summaryValue!))
                            if (g == 1 && x == 2) { tag = System.Text.Encoding.UTF8.GetString(text!); break; }
                        break;
                    }
        }
        return (step, tag);
    }

    /// <summary>The fields of one protobuf message: number, wire type, varint value, or the bytes of a length-delimited field.</summary>
    static IEnumerable<(int Field, int Wire, long Value, byte[]? Bytes)> Fields(byte[] message)
    {
        int at = 0;
        while (at < message.Length)
        {
            long key = Varint(message, ref at);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: yield return (field, wire, Varint(message, ref at), null); break;
                case 1: at += 8; yield return (field, wire, 0, null); break;
                case 5: at += 4; yield return (field, wire, 0, null); break;
                case 2:
                    int length = (int)Varint(message, ref at);
                    if (length < 0 || at + length > message.Length) throw new InvalidDataException("damaged TensorBoard event");
                    yield return (field, wire, 0, message.AsSpan(at, length).ToArray());
                    at += length;
                    break;
                default: throw new InvalidDataException($"damaged TensorBoard event (wire type {wire})");
            }
        }
    }

    static long Varint(byte[] bytes, ref int at)
    {
        long value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (at >= bytes.Length) throw new InvalidDataException("damaged TensorBoard event");
            byte b = bytes[at++];
            value |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw new InvalidDataException("damaged TensorBoard event");
    }
}

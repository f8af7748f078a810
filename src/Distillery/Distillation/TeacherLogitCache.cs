// The teacher's logits on a distillation's training examples, computed once and reused: by every epoch of a run, and,
// through a cache folder, by every run and seed that distils the same teacher on the same examples (Well-Read Students'
// PD rows, vanilla KD rows, 3 seeds each: the teacher's forward is ~40% of a KD step into a half-depth student). The
// shards are safetensors files, one per (teacher, examples) pair, so the teacher's inference could equally run elsewhere.
//
// Exactness: a cached row is the teacher's logits of that example computed in a batch of similar lengths; in training it
// would be computed inside the training batch, padded differently. Padding is masked, so the two differ only by float
// rounding (~1e-6), far below anything a soft-target loss resolves.
using System.Security.Cryptography;
using Distillery.IO;
using Distillery.Models;
using Distillery.Training;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>
/// The teacher's head output on every training example, by example index: classification and regression logits, or a
/// sentence-embedding teacher's vectors (embedding distillation distils those alone).
/// </summary>
public sealed class TeacherLogitCache
{
    /// <summary>Name of the tensor in a cache shard: [N, C] float32.</summary>
    public const string TensorName = "logits";
    private readonly float[] logits;   // [N * C], row-major

    /// <summary>Outputs per example (classes; 1 for regression).</summary>
    public int Width { get; }
    /// <summary>Examples covered.</summary>
    public int Count { get; }
    /// <summary>Where the shard was read or written (null: in memory only).</summary>
    public string? File { get; }
    /// <summary>Whether the shard already existed (the teacher did not run).</summary>
    public bool Reused { get; }

    private TeacherLogitCache(float[] logits, int width, string? file, bool reused)
    {
        this.logits = logits;
        Width = width;
        Count = logits.Length / width;
        File = file;
        Reused = reused;
    }

    /// <summary>The cached logits of <paramref name="rows"/> (example indices), as a [rows, C] tensor in the caller's scope.</summary>
    public Tensor Rows(IReadOnlyList<int> rows)
    {
        var gathered = new float[rows.Count * Width];
        for (int i = 0; i < rows.Count; i++)
        {
            int row = rows[i];
            if ((uint)row >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(rows), $"example {row} is not in the cache of {Count}");
            Array.Copy(logits, (long)row * Width, gathered, (long)i * Width, Width);
        }
        return tensor(gathered, [rows.Count, Width]);
    }

    /// <summary>
    /// The teacher's logits on <paramref name="examples"/>: read from <paramref name="cacheDir"/> when a shard for this
    /// teacher (its weights and config, byte for byte) and these examples (their token ids, in order) exists, else
    /// computed (eval mode, no gradients, batches of similar lengths) and, with a <paramref name="cacheDir"/>, written
    /// there atomically. A shard that does not hold [N, C] float32 for these N examples is refused with its path.
    /// </summary>
    public static TeacherLogitCache Build(BertTaskModel teacher, string teacherDir, IReadOnlyList<EncodedExample> examples, int padId, string? cacheDir)
    {
        if (teacher.Task is not (BertTask.SequenceClassification or BertTask.SentenceEmbedding))
            throw new ArgumentException($"the teacher-logit cache holds classification and regression logits or sentence vectors; this teacher has a {BertTasks.ArchitectureName(teacher.Task)} head");
        if (examples.Count == 0) throw new ArgumentException("no examples to cache the teacher's logits on");
        int width = teacher is BertForSentenceEmbedding embedding ? embedding.EmbeddingDimension : teacher.Config.NumLabels;
        string? file = cacheDir == null ? null : Path.Combine(cacheDir, Key(teacherDir, examples) + ".safetensors");
        if (file != null && System.IO.File.Exists(file))
        {
            var loaded = Safetensors.Load(file);
            try
            {
                if (loaded.Count != 1 || !loaded.TryGetValue(TensorName, out var t) || t.dtype != ScalarType.Float32
                    || t.shape.Length != 2 || t.shape[0] != examples.Count || t.shape[1] != width)
                    throw new InvalidDataException($"{file}: not a teacher-logit shard of [{examples.Count}, {width}] float32 logits; delete it to recompute");
                var values = t.data<float>().ToArray();
                if (values.Any(v => !float.IsFinite(v))) throw new InvalidDataException($"{file}: holds non-finite logits; delete it to recompute");
                return new TeacherLogitCache(values, width, file, reused: true);
            }
            finally
            {
                foreach (var t in loaded.Values) t.Dispose();
            }
        }

        // Sorted by length so a batch pads little; results go back to each example's index.
        var all = new float[examples.Count * width];
        var order = Enumerable.Range(0, examples.Count).OrderBy(i => examples[i].InputIds.Length).ToArray();
        bool wasTraining = teacher.training;
        teacher.eval();
        foreach (var chunk in order.Chunk(64))
        {
            var predicted = TaskObjective.Predict(teacher, chunk.Select(i => examples[i]).ToList(), padId, batchSize: chunk.Length);
            for (int j = 0; j < chunk.Length; j++) Array.Copy(predicted[j], 0, all, (long)chunk[j] * width, width);
        }
        if (wasTraining) teacher.train();
        if (file != null)
        {
            using var scope = NewDisposeScope();
            Safetensors.Save(file, new Dictionary<string, Tensor> { [TensorName] = tensor(all, [examples.Count, width]) },
                new Dictionary<string, string> { ["format"] = "pt", ["teacher"] = Path.GetFullPath(teacherDir), ["examples"] = examples.Count.ToString() });
        }
        return new TeacherLogitCache(all, width, file, reused: false);
    }

    /// <summary>
    /// SHA-256 (hex, 32 characters) of the teacher's weights and config, of a sentence-embedding teacher's
    /// sentence-transformers files (pooling, projection: they change its vectors), and of the examples' ids, in order.
    /// </summary>
    static string Key(string teacherDir, IReadOnlyList<EncodedExample> examples)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData("distillery teacher logits v1\n"u8);
        // A classification teacher has no module files, so its key is what it was before sentence vectors were cached.
        var moduleFiles = SentenceTransformersLayout.IsPresent(teacherDir) ? SentenceTransformersLayout.Files(teacherDir) : [];
        foreach (var name in new[] { BertCheckpoint.ConfigFile, BertCheckpoint.WeightsFile }.Concat(moduleFiles))
        {
            using var stream = System.IO.File.OpenRead(Path.Combine(teacherDir, name));
            hash.AppendData(SHA256.HashData(stream));
        }
        var buffer = new List<byte>();
        foreach (var e in examples)
        {
            buffer.Clear();
            buffer.AddRange(BitConverter.GetBytes(e.InputIds.Length));
            foreach (int id in e.InputIds) buffer.AddRange(BitConverter.GetBytes(id));
            foreach (int type in e.TokenTypeIds) buffer.AddRange(BitConverter.GetBytes(type));
            hash.AppendData(buffer.ToArray());
        }
        return Convert.ToHexString(hash.GetHashAndReset())[..32].ToLowerInvariant();
    }
}

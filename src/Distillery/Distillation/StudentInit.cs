using Distillery.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Distillation;

/// <summary>Where a student's weights come from.</summary>
public enum StudentInitKind
{
    /// <summary>The teacher's embeddings, head and a chosen subset of its layers (DistilBERT: every other layer).</summary>
    TeacherLayers,
    /// <summary>A fresh model of another shape (narrower or shallower), BERT init; embeddings copied when widths match.</summary>
    Random,
    /// <summary>An existing model folder (e.g. a pre-trained compact model, Well-Read Students' step 1).</summary>
    Checkpoint,
}

/// <summary>How to build the student.</summary>
/// <param name="Kind">The source of the weights.</param>
/// <param name="TeacherLayers">For <see cref="StudentInitKind.TeacherLayers"/>: 0-based teacher layers to keep, e.g. [0, 2, 4, 7, 9, 11].</param>
/// <param name="Arch">For <see cref="StudentInitKind.Random"/>: the architecture name, e.g. L2-H256.</param>
/// <param name="Checkpoint">For <see cref="StudentInitKind.Checkpoint"/>: the model folder.</param>
public sealed record StudentInit(StudentInitKind Kind, IReadOnlyList<int>? TeacherLayers = null, string? Arch = null, string? Checkpoint = null)
{
    /// <summary>DistilBERT's choice: teacher layers 0, 2, 4, … (half the depth).</summary>
    public static StudentInit EveryOtherLayer(int teacherLayers) => new(StudentInitKind.TeacherLayers, Enumerable.Range(0, teacherLayers).Where(i => i % 2 == 0).ToArray());

    /// <summary>The first <paramref name="k"/> teacher layers.</summary>
    public static StudentInit FirstLayers(int k) => new(StudentInitKind.TeacherLayers, Enumerable.Range(0, k).ToArray());

    /// <summary>
    /// Builds a student with head <paramref name="task"/> for <paramref name="teacher"/>. Everything that can be checked
    /// is checked before any weight is copied: layer indices, vocabularies, and the head's label count.
    /// </summary>
    public BertTaskModel Build(BertTaskModel teacher, BertTask task, long seed)
    {
        var t = teacher.Config;
        switch (Kind)
        {
            case StudentInitKind.TeacherLayers:
            {
                var layers = TeacherLayers ?? throw new ArgumentException("initialising from teacher layers needs the list of layers");
                CheckLayers(layers, t.NumHiddenLayers);
                var config = LayersConfig(t, layers);
                manual_seed(seed);
                var student = BertTaskModel.Create(config, task);
                // Teacher tensor name → student tensor name: layer k of the student is teacher layer layers[k].
                var rename = new Dictionary<string, string>();
                for (int k = 0; k < layers.Count; k++) rename[$"bert.encoder.layer.{layers[k]}."] = $"bert.encoder.layer.{k}.";
                CopyMatching(teacher, student, name =>
                {
                    if (!name.StartsWith("bert.encoder.layer.", StringComparison.Ordinal)) return name;
                    var prefix = rename.Keys.FirstOrDefault(p => name.StartsWith(p, StringComparison.Ordinal));
                    return prefix == null ? null : rename[prefix] + name[prefix.Length..];
                });
                return student;
            }
            case StudentInitKind.Random:
            {
                var shape = BertArch.Parse(Arch ?? throw new ArgumentException("a randomly initialised student needs an architecture (e.g. L2-H256)"), t.VocabSize);
                var config = shape with
                {
                    MaxPositionEmbeddings = t.MaxPositionEmbeddings, TypeVocabSize = t.TypeVocabSize, Labels = t.Labels, ProblemType = t.ProblemType,
                    HiddenAct = t.HiddenAct, LayerNormEps = t.LayerNormEps, PadTokenId = t.PadTokenId,
                };
                manual_seed(seed);
                var student = BertTaskModel.Create(config, task);
                if (config.HiddenSize == t.HiddenSize)   // same width: the embeddings (and LayerNorm) carry over
                    CopyMatching(teacher, student, name => name.StartsWith("bert.embeddings.", StringComparison.Ordinal) ? name : null);
                return student;
            }
            default:
            {
                string dir = Checkpoint ?? throw new ArgumentException("a checkpoint student needs its model folder");
                var config = BertCheckpoint.ReadConfig(dir);
                if (config.VocabSize != t.VocabSize)
                    throw new ArgumentException($"student {dir} has a {config.VocabSize}-token vocabulary, the teacher {t.VocabSize}: they must share one");
                manual_seed(seed);
                var (student, _) = BertCheckpoint.Load(dir, task, c => c with { Labels = t.Labels, ProblemType = t.ProblemType });
                return student;
            }
        }
    }

    /// <summary>
    /// Checks a list of layers to take from a model: at least one, none repeated, none negative, and each below
    /// <paramref name="available"/> when the model's depth is known (null: a recipe's model not made yet). The one check
    /// of the student init, a recipe's distill and extract stages and <c>distillery extract</c>; <paramref name="noun"/>
    /// and <paramref name="owner"/> name the layers and their model in messages.
    /// </summary>
    public static void CheckLayers(IReadOnlyList<int> layers, int? available, string noun = "teacher layer", string owner = "the teacher")
    {
        if (layers.Count == 0) throw new ArgumentException("the student needs at least one layer");
        foreach (int i in layers)
            if (i < 0 || i >= available)
                throw new ArgumentException($"{noun} {i} does not exist ({(available is int n ? $"{owner} has layers 0..{n - 1}" : "layers count from 0")})");
        if (layers.Distinct().Count() != layers.Count) throw new ArgumentException($"{noun}s repeat in [{string.Join(", ", layers)}]");
    }

    /// <summary>The config of a model made of <paramref name="layers"/> of <paramref name="teacher"/>'s (pruned layers keep their own heads and FFN widths).</summary>
    internal static BertConfig LayersConfig(BertConfig teacher, IReadOnlyList<int> layers) => teacher with
    {
        NumHiddenLayers = layers.Count,
        LayerHeads = teacher.LayerHeads == null ? null : layers.Select(i => teacher.LayerHeads[i]).ToArray(),
        LayerIntermediateSizes = teacher.LayerIntermediateSizes == null ? null : layers.Select(i => teacher.LayerIntermediateSizes[i]).ToArray(),
    };

    /// <summary>
    /// Copies every teacher tensor whose (renamed) name and shape exist in the student; <paramref name="rename"/> returns
    /// the student's name for a teacher name, or null to skip it.
    /// </summary>
    internal static void CopyMatching(BertTaskModel teacher, BertTaskModel student, Func<string, string?> rename)
    {
        var target = student.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = no_grad();
        foreach (var (name, source) in teacher.named_parameters())
        {
            if (rename(name) is not string mapped || !target.TryGetValue(mapped, out var destination)) continue;
            if (!destination.shape.SequenceEqual(source.shape)) continue;
            destination.copy_(source);
        }
    }
}

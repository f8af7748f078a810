namespace Distillery.Evaluation;

/// <summary>
/// How far a student's dev predictions are from its teacher's: the quantity HomoDistil argues stays small when the
/// student starts as the teacher and is pruned gradually (Liang et al. 2023, Fig. 1: the KL between teacher and student
/// predictions over training, against distillation into a fresh small student). Logged at every dev evaluation of a
/// task distillation, so the curve can be drawn from <c>metrics.json</c>.
/// </summary>
public static class TeacherDiscrepancy
{
    /// <summary>Metric name: mean KL(p_teacher ‖ p_student) over dev examples, at temperature 1, in nats (classification).</summary>
    public const string Kl = "teacher_kl";
    /// <summary>Metric name: share of dev examples where the student's argmax equals the teacher's (classification).</summary>
    public const string Agreement = "teacher_agreement";
    /// <summary>Metric name: mean squared difference of the two predictions (regression).</summary>
    public const string Mse = "teacher_mse";

    /// <summary>
    /// The discrepancy metrics of <paramref name="student"/>'s logits against <paramref name="teacher"/>'s, example by
    /// example (both [N][C]; C = 1 for regression). Classification: <see cref="Kl"/> and <see cref="Agreement"/>;
    /// regression: <see cref="Mse"/>.
    /// </summary>
    public static Dictionary<string, double> Of(IReadOnlyList<float[]> teacher, IReadOnlyList<float[]> student, bool regression)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(student);
        if (teacher.Count != student.Count) throw new ArgumentException($"teacher and student predictions differ in count ({teacher.Count} and {student.Count})");
        if (teacher.Count == 0) throw new ArgumentException("no predictions");
        double kl = 0, agree = 0, squared = 0;
        for (int i = 0; i < teacher.Count; i++)
        {
            var t = teacher[i];
            var s = student[i];
            if (t.Length != s.Length || t.Length == 0)
                throw new ArgumentException($"example {i}: teacher has {t.Length} outputs, student {s.Length}");
            if (regression)
            {
                double d = t[0] - s[0];
                squared += d * d;
                continue;
            }
            // KL(p_t ‖ p_s) = Σ_c p_t(c) (log p_t(c) − log p_s(c)), with log-softmax computed stably.
            var logT = LogSoftmax(t);
            var logS = LogSoftmax(s);
            double sum = 0;
            for (int c = 0; c < t.Length; c++) sum += Math.Exp(logT[c]) * (logT[c] - logS[c]);
            kl += sum;
            if (ArgMax(t) == ArgMax(s)) agree++;
        }
        int n = teacher.Count;
        return regression
            ? new() { [Mse] = squared / n }
            : new() { [Kl] = kl / n, [Agreement] = agree / n };
    }

    static double[] LogSoftmax(float[] logits)
    {
        double max = logits.Max(), sum = 0;
        foreach (float v in logits) sum += Math.Exp(v - max);
        double logZ = max + Math.Log(sum);
        return logits.Select(v => v - logZ).ToArray();
    }

    static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}

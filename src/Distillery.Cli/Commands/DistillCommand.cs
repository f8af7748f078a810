using System.CommandLine;
using System.Text.Json.Nodes;
using Distillery.Distillation;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery distill</c>: compress a teacher into a student with a distillation method.</summary>
public static class DistillCommand
{
    public static Command Create(CliContext context)
    {
        var method = new Option<string?>("--method") { Description = "kd: vanilla task-specific KD (--task, --data); distilbert or minilm: task-agnostic on a corpus (--corpus; fine-tune the result next); theseus; homodistil: the teacher pruned to --target while distilled into itself (on --corpus, or on --task/--data)." };
        method.AcceptOnlyFromAmong("kd", "distilbert", "minilm", "theseus", "homodistil");
        var target = new Option<string?>("--target") { Description = "homodistil: the final width, an architecture (L4-H128-F512, -A heads optional) or a parameter count (9.6M)." };
        var score = new Option<string?>("--score") { Description = "homodistil: importance score, sensitivity (|θ·∂L/∂θ|, default), magnitude or platon." };
        score.AcceptOnlyFromAmong("sensitivity", "magnitude", "platon");
        var pruneEvery = new Option<int?>("--prune-every") { Description = "homodistil: steps between mask updates ΔT (default 10)." };
        var alphaKl = new Option<double?>("--alpha-kl") { Description = "homodistil: weight of the logit KL (default 1)." };
        var alphaHidden = new Option<double?>("--alpha-hidden") { Description = "homodistil: weight of the hidden-state MSE (default 1)." };
        var alphaAttention = new Option<double?>("--alpha-attention") { Description = "homodistil: weight of the attention MSE (default 1)." };
        var successorLayers = new Option<int?>("--successor-layers") { Description = "theseus: successor layers n (the teacher's depth must be a multiple; default 6)." };
        var scheduler = new Option<string?>("--scheduler") { Description = "theseus: linear (p = min(1, k·t + b), default), constant (p = b) or anti (p = max(0, 1 − (k·t + b)))." };
        scheduler.AcceptOnlyFromAmong("linear", "constant", "anti");
        var k = new Option<double?>("--k") { Description = "theseus: slope k per step (default 0.0006)." };
        var b = new Option<double?>("--b") { Description = "theseus: intercept b (default 0.3)." };
        var theseusInit = new Option<string?>("--successor-init") { Description = "theseus: first (successor i copies layer i, default) or spread (the first layer of each group)." };
        theseusInit.AcceptOnlyFromAmong("first", "spread");
        var relations = new Option<string?>("--relations") { Description = "minilm: v1 (attention + value relations, equal head counts) or v2 (Q-Q, K-K, V-V relations over --relation-heads)." };
        relations.AcceptOnlyFromAmong("v1", "v2");
        var relationHeads = new Option<int?>("--relation-heads") { Description = "minilm v2: relation heads (must divide both attention widths; default 4)." };
        var teacherLayer = new Option<int?>("--teacher-layer") { Description = "minilm: the teacher layer to distil, 1-based (default: the last)." };
        var corpus = new Option<string[]>("--corpus") { Description = "distilbert: text files or folders.", AllowMultipleArgumentsPerToken = true };
        var seqLength = new Option<int?>("--seq-length") { Description = "distilbert: tokens per packed sequence (default 128)." };
        var invalidUtf8 = new Option<string?>("--invalid-utf8") { Description = "distilbert: error (default) or latin1 for lines that are not UTF-8." };
        invalidUtf8.AcceptOnlyFromAmong("error", "latin1");
        var alphaCe = new Option<double?>("--alpha-ce") { Description = "distilbert: weight of the soft-target KL (default 5)." };
        var alphaMlm = new Option<double?>("--alpha-mlm") { Description = "distilbert: weight of the MLM loss (default 2); homodistil: of the MLM loss on a corpus, of the task loss on a task (default 1)." };
        var alphaCos = new Option<double?>("--alpha-cos") { Description = "distilbert: weight of the cosine loss (default 1)." };
        var teacher = new Option<string?>("--teacher") { Description = "Fine-tuned teacher model folder." };
        var student = new Option<string?>("--student") { Description = "Start the student from this model folder (e.g. a pre-trained compact model)." };
        var studentArch = new Option<string?>("--student-arch") { Description = "A fresh student of this architecture, e.g. L2-H256 (embeddings copied when widths match)." };
        var fromTeacher = new Option<string?>("--init-from-teacher") { Description = "Student = these 0-based teacher layers, e.g. 0,2 (DistilBERT-style), with the teacher's embeddings and head." };
        var task = new Option<string?>("--task") { Description = "GLUE task or squad." };
        var data = new Option<string?>("--data") { Description = "GLUE folder or SQuAD JSON file." };
        var output = new Option<string?>("--out", "-o") { Description = "Output model folder." };
        var temperature = new Option<double?>("--temperature") { Description = "Soft-target temperature (default 2)." };
        var alpha = new Option<double?>("--alpha") { Description = "Weight of the soft-target loss; 1 − alpha on the labels (default 0.5)." };
        var maxLength = new Option<int?>("--max-length") { Description = "Longest input in tokens." };
        var splitArticles = new Option<int?>("--split-articles") { Description = "SQuAD: train on N articles, evaluate on the rest." };
        var transfer = new Option<string[]>("--transfer-data") { Description = "kd: distil on unlabeled text instead of the training set (one example per line, tab between a pair's texts; needs --alpha 1).", AllowMultipleArgumentsPerToken = true };
        var maxTrain = new Option<int?>("--max-train-examples") { Description = "GLUE: a seeded sample of at most N training examples." };
        var config = new Option<string?>("--config") { Description = "A run_config.json (or options JSON) to start from; flags override it." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the last checkpoint in --out." };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var training = new TrainingCliOptions();
        var command = new Command("distill", "Distil a fine-tuned teacher into a smaller student on a task (keeps the best dev checkpoint).\n" +
            "Example: distillery distill --method homodistil --teacher runs/teacher/sst2 --task sst2 --data ../shared/data/glue --target L4-H128-F512 --score sensitivity --out runs/homodistil")
        {
            method, teacher, student, studentArch, fromTeacher, task, data, output, temperature, alpha, maxLength, splitArticles, maxTrain, transfer, config, resume, overwrite,
            corpus, seqLength, invalidUtf8, alphaCe, alphaMlm, alphaCos, relations, relationHeads, teacherLayer,
            successorLayers, scheduler, k, b, theseusInit, target, score, pruneEvery, alphaKl, alphaHidden, alphaAttention,
        };
        training.AddTo(command);
        command.SetAction(parse =>
        {
            // HomoDistil's options, from the flags over a given starting point.
            HomoDistilOptions Homo(HomoDistilOptions h)
            {
                if (parse.GetValue(target) is string tg) h = h with { Target = tg };
                if (parse.GetValue(score) is string sc) h = h with { Score = sc switch { "magnitude" => Pruning.ImportanceScore.Magnitude, "platon" => Pruning.ImportanceScore.Platon, _ => Pruning.ImportanceScore.Sensitivity } };
                if (parse.GetValue(pruneEvery) is int pe) h = h with { PruneEvery = pe };
                if (parse.GetValue(alphaMlm) is double am) h = h with { AlphaMlm = am };
                if (parse.GetValue(alphaKl) is double ak) h = h with { AlphaKl = ak };
                if (parse.GetValue(alphaHidden) is double ah) h = h with { AlphaHidden = ah };
                if (parse.GetValue(alphaAttention) is double aa) h = h with { AlphaAttention = aa };
                if (parse.GetValue(temperature) is double te) h = h with { Temperature = te };
                return h;
            }
            bool homodistil = parse.GetValue(method) == "homodistil";
            if (parse.GetValue(method) is "distilbert" or "minilm" || (homodistil && parse.GetValue(corpus) is { Length: > 0 }))
                return RunOnCorpus(context, parse, training, homodistil ? DistillMethod.HomoDistil : parse.GetValue(method) == "minilm" ? DistillMethod.MiniLm : DistillMethod.DistilBert,
                    teacher, student, studentArch, fromTeacher, output, corpus, seqLength, invalidUtf8, temperature, alphaCe, alphaMlm, alphaCos,
                    relations, relationHeads, teacherLayer, resume, overwrite, Homo);
            var basis = parse.GetValue(config) is string path ? PretrainCommand.LoadConfig<DistillOptions>(path, new()
            {
                ["teacher"] = parse.GetValue(teacher), ["task"] = parse.GetValue(task), ["data"] = parse.GetValue(data), ["out"] = parse.GetValue(output),
            }) : null;
            bool theseus = parse.GetValue(method) == "theseus" || (parse.GetValue(method) == null && basis?.Method == DistillMethod.Theseus);
            homodistil |= parse.GetValue(method) == null && basis?.Method == DistillMethod.HomoDistil;
            var init = StudentFrom(parse.GetValue(student), parse.GetValue(studentArch), parse.GetValue(fromTeacher)) ?? basis?.Student;
            if (init == null && !theseus && !homodistil) throw new ArgumentException("give one of --student DIR, --student-arch ARCH or --init-from-teacher LAYERS");
            var options = (basis ?? new DistillOptions
            {
                Teacher = parse.GetValue(teacher) ?? throw new ArgumentException("give --teacher (the fine-tuned teacher folder)"),
                Student = init,
                Task = parse.GetValue(task) ?? throw new ArgumentException("give --task"),
                Data = parse.GetValue(data) ?? throw new ArgumentException("give --data"),
                Out = parse.GetValue(output) ?? throw new ArgumentException("give --out"),
            }) with { Student = init };
            if (parse.GetValue(teacher) is string t) options = options with { Teacher = t };
            if (parse.GetValue(task) is string taskName) options = options with { Task = taskName };
            if (parse.GetValue(data) is string d) options = options with { Data = d };
            if (parse.GetValue(output) is string o) options = options with { Out = o };
            if (parse.GetValue(method) is string) options = options with { Method = theseus ? DistillMethod.Theseus : homodistil ? DistillMethod.HomoDistil : DistillMethod.Kd };
            options = options with { HomoDistil = Homo(options.HomoDistil) };
            var ts = options.Theseus;
            if (parse.GetValue(successorLayers) is int n) ts = ts with { SuccessorLayers = n };
            if (parse.GetValue(scheduler) is string sc) ts = ts with { Scheduler = sc switch { "constant" => TheseusScheduler.Constant, "anti" => TheseusScheduler.AntiCurriculum, _ => TheseusScheduler.Linear } };
            if (parse.GetValue(k) is double kk) ts = ts with { K = kk };
            if (parse.GetValue(b) is double bb) ts = ts with { B = bb };
            if (parse.GetValue(theseusInit) == "spread") ts = ts with { Init = TheseusInit.EvenlySpread };
            options = options with { Theseus = ts };
            if (parse.GetValue(temperature) is double temp) options = options with { Kd = options.Kd with { Temperature = temp } };
            if (parse.GetValue(alpha) is double a) options = options with { Kd = options.Kd with { Alpha = a } };
            if (parse.GetValue(maxLength) is int m) options = options with { MaxLength = m };
            if (parse.GetValue(splitArticles) is int s) options = options with { SplitArticles = s };
            if (parse.GetValue(maxTrain) is int cap) options = options with { MaxTrainExamples = cap };
            if (parse.GetValue(transfer) is { Length: > 0 } files) options = options with { TransferData = files };
            options = options with { Trainer = training.Apply(parse, options.Trainer) };
            var metrics = RunProgress.Show(context, events => Distiller.Run(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: dev {metrics["dev"]!.ToJsonString()} (best at step {metrics["best_step"]})");
            context.WarnIfDistilleryOnly(options.Out);
            return 0;
        });
        return command;
    }

    static int RunOnCorpus(CliContext context, ParseResult parse, TrainingCliOptions training, DistillMethod method, Option<string?> teacher, Option<string?> student,
        Option<string?> studentArch, Option<string?> fromTeacher, Option<string?> output, Option<string[]> corpus, Option<int?> seqLength,
        Option<string?> invalidUtf8, Option<double?> temperature, Option<double?> alphaCe, Option<double?> alphaMlm, Option<double?> alphaCos,
        Option<string?> relations, Option<int?> relationHeads, Option<int?> teacherLayer, Option<bool> resume, Option<bool> overwrite, Func<HomoDistilOptions, HomoDistilOptions> homo)
    {
        var options = new CorpusDistillOptions
        {
            Method = method,
            Teacher = parse.GetValue(teacher) ?? throw new ArgumentException("give --teacher (the pre-trained masked-LM teacher)"),
            Corpus = parse.GetValue(corpus) is { Length: > 0 } c ? c : throw new ArgumentException("give --corpus (text files or folders)"),
            Out = parse.GetValue(output) ?? throw new ArgumentException("give --out"),
            Student = StudentFrom(parse.GetValue(student), parse.GetValue(studentArch), parse.GetValue(fromTeacher)),
        };
        if (parse.GetValue(seqLength) is int l) options = options with { SeqLength = l };
        if (parse.GetValue(invalidUtf8) == "latin1") options = options with { InvalidUtf8 = Data.InvalidUtf8.Latin1 };
        var weights = options.DistilBert;
        if (parse.GetValue(temperature) is double t) weights = weights with { Temperature = t };
        if (parse.GetValue(alphaCe) is double ce) weights = weights with { AlphaCe = ce };
        if (parse.GetValue(alphaMlm) is double mlm) weights = weights with { AlphaMlm = mlm };
        if (parse.GetValue(alphaCos) is double cos) weights = weights with { AlphaCos = cos };
        var minilm = options.MiniLm;
        if (parse.GetValue(relations) == "v2") minilm = minilm with { Relations = MiniLmRelations.V2 };
        if (parse.GetValue(relationHeads) is int rh) minilm = minilm with { RelationHeads = rh };
        if (parse.GetValue(teacherLayer) is int tl) minilm = minilm with { TeacherLayer = tl };
        options = options with { DistilBert = weights, MiniLm = minilm, HomoDistil = homo(options.HomoDistil), Trainer = training.Apply(parse, options.Trainer) };
        var metrics = RunProgress.Show(context, events => Distiller.RunOnCorpus(options, parse.GetValue(resume), events, parse.GetValue(overwrite)));
        context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: {metrics["eval"]?.ToJsonString()} (fine-tune it next)");
        context.WarnIfDistilleryOnly(options.Out);
        return 0;
    }

    static StudentInit? StudentFrom(string? dir, string? arch, string? layers)
    {
        int given = (dir != null ? 1 : 0) + (arch != null ? 1 : 0) + (layers != null ? 1 : 0);
        if (given > 1) throw new ArgumentException("give only one of --student, --student-arch and --init-from-teacher");
        if (dir != null) return new StudentInit(StudentInitKind.Checkpoint, Checkpoint: dir);
        if (arch != null) return new StudentInit(StudentInitKind.Random, Arch: arch);
        if (layers == null) return null;
        var list = layers.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(x => int.TryParse(x, out int i) ? i : throw new ArgumentException($"--init-from-teacher: \"{x}\" is not a layer index")).ToArray();
        return new StudentInit(StudentInitKind.TeacherLayers, list);
    }
}

// modbox images list | get | create | update | delete | build, and modbox snapshot

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cli/cli.h"
#include "cli/progress.h"
#include "cli/table.h"
#include "common/image_models.h"
#include "common/output_events.h"
#include "common/paths.h"
#include "common/system.h"
#include "common/tar_archive.h"

namespace modbox {

Result<std::string> image_id_of(const AgentClient& agent, const std::string& argument) {
  if (is_uuid(argument)) return argument;
  auto body = agent.call("GET", "/sandbox-images");
  if (!body) return std::unexpected(body.error());
  auto images = images_from_json(*body);
  if (!images) return std::unexpected(images.error());
  std::vector<std::string> matches;
  for (const auto& image : *images)
    if (image.name == argument || image.image == argument || image.image + ":" + image.tag == argument)
      matches.push_back(image.id);
  if (matches.size() == 1) return matches.front();
  if (matches.empty()) return fail(ErrorKind::not_found, "no image with id, name or repository '" + argument + "'");
  return fail(ErrorKind::conflict, "'" + argument + "' names " + std::to_string(matches.size()) +
                                       " images; give the id (modbox images list)");
}

namespace {

std::string or_dash(const std::optional<int>& value) {
  return value ? std::to_string(*value) : "-";
}

void print_image(const SandboxImage& image) {
  std::printf("id:             %s\n", image.id.c_str());
  std::printf("name:           %s\n", image.name.c_str());
  std::printf("image:          %s:%s\n", image.image.c_str(), image.tag.c_str());
  std::printf("description:    %s\n", image.description.value_or("-").c_str());
  std::printf("enabled:        %s\n", image.enabled ? "yes" : "no");
  std::printf("is_default:     %s\n", image.is_default ? "yes" : "no");
  std::printf("memory_mb:      %d\n", image.memory_mb);
  std::printf("ttl_seconds:    %s\n", or_dash(image.ttl_seconds).c_str());
  std::printf("readiness_port: %s\n", or_dash(image.readiness_port).c_str());
  std::printf("workspace:      %s\n", image.workspace_id.value_or("(global)").c_str());
  std::printf("registry:       %s\n",
              image.registry_id ? (image.registry_name.value_or("?") + " (" + *image.registry_id + ")").c_str() : "-");
  std::printf("created_at:     %s\n", format_timestamp(image.created_at).c_str());
  std::printf("updated_at:     %s\n", format_timestamp(image.updated_at).c_str());
}

void print_table(const std::vector<SandboxImage>& images) {
  std::vector<std::vector<std::string>> rows{
      {"ID", "NAME", "IMAGE", "ENABLED", "DEFAULT", "MEMORY", "TTL", "WORKSPACE"}};
  for (const auto& image : images)
    rows.push_back({image.id, image.name, image.image + ":" + image.tag, image.enabled ? "yes" : "no",
                    image.is_default ? "yes" : "no", std::to_string(image.memory_mb), or_dash(image.ttl_seconds),
                    image.workspace_id.value_or("(global)")});
  // The repository gives way first, then the id and the name.
  std::fputs(format_columns(rows, {.output = stdout_terminal(), .flexible = {2, 0, 1, 7}}).c_str(), stdout);
}

Result<int> show_image(const CliContext& context, const std::string& body) {
  auto formatted = print_formatted(context, body);
  if (!formatted) return std::unexpected(formatted.error());
  if (*formatted) return 0;
  if (context.json) {
    std::printf("%s\n", body.c_str());
    return 0;
  }
  auto image = image_from_json(body);
  if (!image) return std::unexpected(image.error());
  if (context.quiet)
    std::printf("%s\n", image->id.c_str());
  else
    print_image(*image);
  return 0;
}

/// Runs argv with this terminal (stdout goes to stderr when `quiet_stdout`, so --json output stays
/// parseable) and returns its exit status.
Result<int> run_attached(const std::vector<std::string>& argv, bool quiet_stdout) {
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(system_error("fork", argv.front(), errno));
  if (pid == 0) {
    if (quiet_stdout) ::dup2(2, 1);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "modbox: cannot run %s: %s\n", argv.front().c_str(), std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return std::unexpected(system_error("waitpid", argv.front(), errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void add_list(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("list", "List the images this workspace can use (its own and the global ones)");
  command->alias("ls");
  auto enabled_only = std::make_shared<bool>(false);
  command->add_flag("--enabled-only", *enabled_only, "Only images that can be provisioned");
  add_format_option(*command, context);
  command->callback([&context, enabled_only] {
    context.action = [&context, enabled_only]() -> Result<int> {
      auto body = context.call("GET", std::string("/sandbox-images") + (*enabled_only ? "?enabled_only=true" : ""));
      if (!body) return std::unexpected(body.error());
      return print_list(context, *body, images_from_json, &SandboxImage::id, print_table);
    };
  });
}

void add_get(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("get", "Show one image");
  auto id = std::make_shared<std::string>();
  command->add_option("image", *id, "Image id, name or repository")->required()->type_name(image_type_name);
  add_format_option(*command, context);
  command->callback([&context, id] {
    context.action = [&context, id]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      auto image_id = image_id_of(*agent, *id);
      if (!image_id) return std::unexpected(image_id.error());
      auto body = agent->call("GET", "/sandbox-images/" + *image_id);
      if (!body) return std::unexpected(body.error());
      return show_image(context, *body);
    };
  });
}

/// `images create --file`: the context as a tar and the Containerfile go to POST
/// /sandbox-images/build, whose output is shown as it comes (cli/progress.h); the image on stdout.
Result<int> build_image(const CliContext& context, const ImageCreateRequest& request, const std::string& file,
                        const std::string& context_dir) {
  auto containerfile = read_file(file, build_containerfile_max_bytes);
  if (!containerfile) return std::unexpected(containerfile.error());
  std::filesystem::path directory =
      context_dir.empty() ? std::filesystem::absolute(file).parent_path() : std::filesystem::path(context_dir);
  auto tar = tar_directory(directory, build_context_max_bytes);
  if (!tar) return std::unexpected(tar.error());
  auto agent = context.running_client();
  if (!agent) return std::unexpected(agent.error());
  Progress progress("building", progress_options(context.quiet));
  progress.status("sending the context (" + std::to_string(tar->size() >> 10) + " KiB of " + directory.string() + ")");
  progress.start_ticker();
  EventReader reader;
  std::optional<std::string> image;
  std::optional<Error> failure;
  auto streamed = agent->post_form_events(
      "/sandbox-images/build",
      {{"image", "", "application/json", image_build_fields_to_json(request)},
       {"containerfile", "Containerfile", "text/plain", std::move(*containerfile)},
       {"context", "context.tar", "application/x-tar", std::move(*tar)}},
      [&](std::string_view bytes) {
        reader.feed(bytes);
        while (auto event = reader.next()) {
          if (event->name == "output") {
            auto line = build_output_line(event->data);
            if (!line) continue;
            progress.line(*line);
            if (line->starts_with("STEP ")) progress.status(*line);
          } else if (event->name == "image") {
            image = event->data;
          } else if (event->name == "error") {
            failure = build_error_from_event(event->data);
          }
        }
        return true;
      },
      3600);
  if (!streamed) return std::unexpected(streamed.error());
  if (failure) return std::unexpected(*failure);
  if (!image) return fail(ErrorKind::unavailable, "the agent's answer ended before the build did");
  progress.finish("built image '" + request.name + "'");
  return show_image(context, *image);
}

void add_create(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand(
      "create", "Register an image, or build one from a Containerfile (--file); global without --workspace");
  struct Options {
    ImageCreateRequest request;
    std::string description;
    bool disabled = false;
    std::optional<int> ttl, port;
    std::string registry_id;
    std::string file, context;
  };
  auto options = std::make_shared<Options>();
  command->add_option("--name", options->request.name, "Human-readable name")->required();
  auto* image =
      command->add_option("--image", options->request.image, "Repository: ghcr.io/org/app, 127.0.0.1:5000/team/app");
  auto* tag = command->add_option("--tag", options->request.tag, "Tag (default latest)");
  auto* file = command
                   ->add_option("--file,-f", options->file,
                                "Build the image from this Containerfile (FROM an image this host has)")
                   ->excludes(image)
                   ->excludes(tag);
  command
      ->add_option("--context", options->context,
                   "The build's context directory, uploaded for COPY and ADD (default: the Containerfile's)")
      ->needs(file);
  command->add_option("--description", options->description, "Description");
  command->add_option("--memory-mb", options->request.memory_mb, "Memory limit in MB, 256-8192 (default 1024)");
  command->add_option("--ttl", options->ttl, "Default TTL of its sandboxes in seconds, 60-86400");
  command->add_option("--readiness-port", options->port, "HTTP port for the readiness probe, 1-65535");
  command
      ->add_option("--registry-id", options->registry_id, "Registry credential to pull with (modbox registries list)")
      ->excludes(file);
  command->add_flag("--disabled", options->disabled, "Register it disabled (it cannot be provisioned until enabled)");
  command->add_flag("--default", options->request.is_default, "Make it the workspace's default image");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      ImageCreateRequest request = options->request;
      if (!options->description.empty()) request.description = options->description;
      request.enabled = !options->disabled;
      request.ttl_seconds = options->ttl;
      request.readiness_port = options->port;
      if (!options->registry_id.empty()) request.registry_id = options->registry_id;
      if (!options->file.empty()) return build_image(context, request, options->file, options->context);
      if (request.image.empty())
        return fail(ErrorKind::bad_request,
                    "give --image REPOSITORY to register an image, or --file Containerfile to build one");
      auto body = context.call("POST", "/sandbox-images", image_create_request_to_json(request));
      if (!body) return std::unexpected(body.error());
      return show_image(context, *body);
    };
  });
}

void add_update(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("update", "Change an image's fields (only those given)");
  struct Options {
    std::string id;
    ImageUpdateRequest request;
    std::optional<std::string> name, image, tag, description, registry_id;
    std::optional<int> memory, ttl, port;
    bool enable = false, disable = false, make_default = false, no_default = false;
    bool no_ttl = false, no_port = false, no_registry = false, no_description = false;
  };
  auto options = std::make_shared<Options>();
  command->add_option("image_ref", options->id, "Image id, name or repository")->required()->type_name(image_type_name);
  command->add_option("--name", options->name, "Human-readable name");
  command->add_option("--image", options->image, "Repository");
  command->add_option("--tag", options->tag, "Tag");
  command->add_option("--description", options->description, "Description");
  command->add_option("--memory-mb", options->memory, "Memory limit in MB, 256-8192");
  command->add_option("--ttl", options->ttl, "Default TTL in seconds, 60-86400");
  command->add_option("--readiness-port", options->port, "HTTP port for the readiness probe");
  command->add_option("--registry-id", options->registry_id, "Registry credential to pull with");
  auto* enable = command->add_flag("--enable", options->enable, "Allow provisioning from it");
  command->add_flag("--disable", options->disable, "Refuse provisioning from it")->excludes(enable);
  auto* make_default = command->add_flag("--default", options->make_default, "Make it the workspace's default");
  command->add_flag("--no-default", options->no_default, "Stop it being the default")->excludes(make_default);
  command->add_flag("--no-ttl", options->no_ttl, "Clear the default TTL");
  command->add_flag("--no-readiness-port", options->no_port, "Clear the readiness port");
  command->add_flag("--no-registry", options->no_registry, "Pull without credentials");
  command->add_flag("--no-description", options->no_description, "Clear the description");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      ImageUpdateRequest request;
      request.name = options->name;
      request.image = options->image;
      request.tag = options->tag;
      request.memory_mb = options->memory;
      if (options->enable || options->disable) request.enabled = options->enable;
      if (options->make_default || options->no_default) request.is_default = options->make_default;
      if (options->description || options->no_description) request.description = options->description;
      if (options->ttl || options->no_ttl) request.ttl_seconds = options->ttl;
      if (options->port || options->no_port) request.readiness_port = options->port;
      if (options->registry_id || options->no_registry) request.registry_id = options->registry_id;
      if (request.empty())
        return fail(ErrorKind::bad_request, "nothing to change: give at least one option (see --help)");
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      auto image_id = image_id_of(*agent, options->id);
      if (!image_id) return std::unexpected(image_id.error());
      auto body = agent->call("PUT", "/sandbox-images/" + *image_id, image_update_request_to_json(request));
      if (!body) return std::unexpected(body.error());
      return show_image(context, *body);
    };
  });
}

void add_delete(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("delete", "Delete image registrations (not the images in Podman storage)");
  command->alias("rm");
  auto ids = std::make_shared<std::vector<std::string>>();
  command->add_option("image", *ids, "Image ids, names or repositories")->required()->type_name(image_type_name);
  command->callback([&context, ids] {
    context.action = [&context, ids]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      return for_each_name(context, *ids,
                           [&](const std::string& argument) -> Result<std::pair<std::string, std::string>> {
                             auto image_id = image_id_of(*agent, argument);
                             if (!image_id) return std::unexpected(image_id.error());
                             auto body = agent->call("DELETE", "/sandbox-images/" + *image_id);
                             if (!body) return std::unexpected(body.error());
                             return std::pair{*body, *image_id};
                           });
    };
  });
}

void add_build(CLI::App& group, CliContext& context) {
  auto* command = group.add_subcommand("build", "Build default images (modbox/NAME) into your Podman storage");
  struct Options {
    std::vector<std::string> names;
    bool all = false;
    bool force = false;
  };
  auto options = std::make_shared<Options>();
  auto* names =
      command->add_option("name", options->names, "Default images to build")
          ->check(CLI::IsMember(std::vector<std::string>(default_image_names.begin(), default_image_names.end())));
  command->add_flag("--all", options->all, "Every default image")->excludes(names);
  command->add_flag("--force", options->force, "Rebuild even when present (unchanged steps come from the layer cache)");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      if (options->names.empty() && !options->all) return fail(ErrorKind::bad_request, "give image names or --all");
      auto images_dir = find_images_dir();
      if (!images_dir)
        return fail(ErrorKind::not_found,
                    "cannot find the images/ directory with the build script: set "
                    "MODBOX_IMAGES_DIR to a modbox checkout's images/");
      // images/build does the work: the Debian base (mmdebstrap on this host, with its CA bundle and
      // proxy), then podman build. Its output is the progress: podman draws bars on a terminal only.
      std::vector<std::string> argv = {(*images_dir / "build").string()};
      if (options->force) argv.push_back("--force");
      if (options->all) argv.push_back("--all");
      argv.insert(argv.end(), options->names.begin(), options->names.end());
      auto started = std::chrono::steady_clock::now();
      auto status = run_attached(argv, context.json);
      if (!status) return std::unexpected(status.error());
      auto seconds =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
      if (context.json)
        std::printf("{\"built\":%s,\"seconds\":%lld}\n", *status == 0 ? "true" : "false",
                    static_cast<long long>(seconds));
      return *status;
    };
  });
}

/// On a terminal, a line every 10 s while a snapshot is copied (one blocking request), until `done`.
class SnapshotTicker {
 public:
  explicit SnapshotTicker(bool on_terminal) {
    if (!on_terminal) return;
    thread_ = std::thread([this] {
      auto started = std::chrono::steady_clock::now();
      std::unique_lock lock(mutex_);
      while (!changed_.wait_for(lock, std::chrono::seconds(10), [this] { return done_; })) {
        auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
        std::fprintf(stderr, "  still copying the sandbox's files (%lld s)...\n",
                     static_cast<long long>(seconds.count()));
      }
    });
  }
  ~SnapshotTicker() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool done_ = false;
  std::thread thread_;
};

void add_snapshot(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand(
      "snapshot", "Save a running sandbox's files as a new image of its workspace (provision it with --image-id)");
  auto request = std::make_shared<SnapshotRequest>();
  command->add_option("task_id", request->task_id, "The running sandbox's task_id")
      ->required()
      ->type_name(sandbox_type_name);
  command->add_option("name", request->name, "Name of the new image (unique among the workspace's images)")->required();
  command->callback([&context, request] {
    context.action = [&context, request]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      bool on_terminal = !context.json && !context.quiet && ::isatty(2);
      if (on_terminal)
        std::fprintf(stderr,
                     "snapshotting %s as image '%s' (its files are copied: a large sandbox takes a minute)...\n",
                     request->task_id.c_str(), request->name.c_str());
      Result<std::string> body;
      {
        SnapshotTicker ticker(on_terminal);
        body = agent->call("POST", "/sandboxes/snapshot", snapshot_request_to_json(*request), 1800 + 30);
      }
      if (!body) return std::unexpected(body.error());
      return show_image(context, *body);
    };
  });
}

}  // namespace

void add_image_commands(CLI::App& app, CliContext& context) {
  add_snapshot(app, context);
  auto* group = app.add_subcommand("images", "Register, list, change and build sandbox images");
  group->require_subcommand(1);
  add_list(*group, context);
  add_get(*group, context);
  add_create(*group, context);
  add_update(*group, context);
  add_delete(*group, context);
  add_build(*group, context);
}

}  // namespace modbox

#pragma once
// What zsh offers on TAB, for the completion tests (unit and integration): a zsh script, written to a
// file and run as `zsh FILE COMPLETION_DIR WORDS...`, that prints what zsh offers when TAB is pressed
// after WORDS (the last one the word being completed, possibly empty), one match a line. A real
// interactive zsh on a pseudo-terminal (zsh/zpty) runs compinit with COMPLETION_DIR first in $fpath,
// and compadd is wrapped to print every match it is given. The completion ends the shell
// (comppostfuncs=(exit)), which ends the script.

#include <string_view>

namespace modbox::testing {

inline constexpr std::string_view zsh_complete_script = R"zsh(emulate -L zsh
zmodload zsh/zpty || exit 9
(( $# >= 2 )) || { print -u2 "usage: zsh-complete COMPLETION_DIR WORDS..."; exit 2 }
local dir=$1; shift
local setup=$(mktemp) || exit 9
trap 'rm -f $setup' EXIT
cat >$setup <<SETUP
PROMPT=''
RPROMPT=''
fpath=(${(q)dir} \$fpath)
autoload -U compinit && compinit -u -D
bindkey '^I' complete-word
zstyle ':completion:*' list-grouped false
zstyle ':completion:*' insert-tab false
compadd() {
  # Calls that only collect (-O, -A, -D) are the completion system's own bookkeeping.
  if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
    builtin compadd "\$@"
    return
  fi
  local -a __hits
  builtin compadd -A __hits "\$@"
  local hit
  for hit in \$__hits; do print -r -- "<match>\$hit"; done
  builtin compadd "\$@"
}
comppostfuncs=(exit)
print '<ready>'
SETUP
zpty z zsh -f -i
zpty -w z "source ${(q)setup}"
local line
# Up to the prompt after the setup, then the words and TAB; the shell exits once it has completed.
while zpty -r z line; do [[ $line == '<ready>'* ]] && break; done
zpty -w -n z "$*"$'\t'
while zpty -r z line; do
  [[ $line == *'<match>'* ]] && print -r -- ${${${line#*<match>}%$'\n'}%$'\r'}
done
zpty -d z
)zsh";

}  // namespace modbox::testing

package caddymodule

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/users"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "twostep",
		Usage: "<hash-password|user> ...",
		Short: "Manages twostep: password hashes and the users file",
		Long: `
Manages twostep from the shell.

  caddy twostep hash-password [--plaintext P] [--algorithm argon2id|bcrypt]
  caddy twostep user list
  caddy twostep user add <name> [--email E] [--name "Display Name"] [--group G]... [--phone +1555...]
  caddy twostep user passwd <name>
  caddy twostep user disable <name> [--enable]
  caddy twostep devices list <user>
  caddy twostep devices revoke <user> [<id>]   (every trusted browser without an id)
  caddy twostep reset-2sv <user>
  caddy twostep recovery list
  caddy twostep recovery show <id>
  caddy twostep recovery approve <id> [--reason R]
  caddy twostep recovery deny <id> --reason R
  caddy twostep backup <file>
  caddy twostep compact <store file> <new file>

The user commands edit the users file named by the twostep global option
of --config (default ./Caddyfile), or the one given with --users-file.
The devices, reset-2sv, recovery and backup commands ask the running server
through its admin endpoint (from --address, or the admin option of --config).
backup writes a consistent copy of the embedded store while Caddy runs;
compact writes a store file (stopped, or a backup) without its free space.
Passwords are read from the terminal without echo, or from stdin.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(hashPasswordCmd(), userCmd(), devicesCmd(), resetCmd(), recoveryCmd(), backupCmd(), compactCmd())
		},
	})
}

func hashPasswordCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "hash-password",
		Short: "Hashes a password for the users file (argon2id by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plain, _ := cmd.Flags().GetString("plaintext")
			algo, _ := cmd.Flags().GetString("algorithm")
			if algo != "argon2id" && algo != "bcrypt" {
				return fmt.Errorf("--algorithm %q: want argon2id or bcrypt", algo)
			}
			if plain == "" {
				var err error
				if plain, err = readPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), true); err != nil {
					return err
				}
			}
			h, err := users.Hash(plain, users.Algorithm(algo))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
	c.Flags().StringP("plaintext", "p", "", "the password (read from the terminal or stdin when omitted)")
	c.Flags().StringP("algorithm", "a", "argon2id", "argon2id or bcrypt")
	return c
}

// readPassword reads a password from the terminal (twice, without echo)
// or one line from stdin.
func readPassword(in io.Reader, out io.Writer, confirm bool) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(out, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return "", err
		}
		if confirm {
			fmt.Fprint(out, "Again: ")
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(out)
			if err != nil {
				return "", err
			}
			if string(a) != string(b) {
				return "", errors.New("the passwords do not match")
			}
		}
		if len(a) == 0 {
			return "", errors.New("empty password")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password on stdin")
	}
	return line, nil
}

// usersFilePath finds the users file: --users-file, or users_file in the
// twostep global option of --config.
func usersFilePath(cmd *cobra.Command) (string, error) {
	if p, _ := cmd.Flags().GetString("users-file"); p != "" {
		return p, nil
	}
	cfgPath, _ := cmd.Flags().GetString("config")
	adapterName, _ := cmd.Flags().GetString("adapter")
	body, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", fmt.Errorf("reading %s (or give --users-file): %w", cfgPath, err)
	}
	adapter := caddyconfig.GetAdapter(adapterName)
	if adapter == nil {
		return "", fmt.Errorf("unknown config adapter %q", adapterName)
	}
	js, _, err := adapter.Adapt(body, map[string]any{"filename": cfgPath})
	if err != nil {
		return "", fmt.Errorf("adapting %s: %w", cfgPath, err)
	}
	var cfg struct {
		Apps struct {
			Twostep struct {
				UsersFile string `json:"users_file"`
			} `json:"twostep"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		return "", err
	}
	raw := cfg.Apps.Twostep.UsersFile
	if raw == "" {
		return "", fmt.Errorf("%s has no twostep users_file (or give --users-file)", cfgPath)
	}
	// As the server reads it (App.expandPlaceholders): else the command
	// would edit, even create, a file named after the placeholder.
	p := caddy.NewReplacer().ReplaceKnown(raw, "")
	if strings.TrimSpace(p) == "" {
		return "", fmt.Errorf("%s: users_file %q is empty once expanded (an unset environment variable?); set it, or give --users-file", cfgPath, raw)
	}
	return p, nil
}

func userCmd() *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Lists and edits users in the users file"}
	c.PersistentFlags().String("config", "Caddyfile", "the Caddyfile whose twostep users_file to edit")
	c.PersistentFlags().String("adapter", "caddyfile", "the config adapter of --config")
	c.PersistentFlags().String("users-file", "", "the users file (instead of reading --config)")

	list := &cobra.Command{
		Use: "list", Short: "Lists users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := usersFilePath(cmd)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			db, err := users.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tNAME\tEMAIL\tGROUPS\tSTATUS")
			for _, u := range db.Users() {
				status := "active"
				if u.Disabled {
					status = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.DisplayName, u.Email, strings.Join(u.Groups, ","), status)
			}
			return tw.Flush()
		},
	}

	add := &cobra.Command{
		Use: "add <name>", Short: "Adds a user (asks for the password)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := usersFilePath(cmd)
			if err != nil {
				return err
			}
			pw, _ := cmd.Flags().GetString("password")
			if pw == "" {
				if pw, err = readPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), true); err != nil {
					return err
				}
			}
			h, err := users.Hash(pw, users.Algorithm("argon2id"))
			if err != nil {
				return err
			}
			nu := users.NewUser{Name: args[0], Hash: h}
			nu.DisplayName, _ = cmd.Flags().GetString("name")
			nu.Email, _ = cmd.Flags().GetString("email")
			nu.Phone, _ = cmd.Flags().GetString("phone")
			nu.Groups, _ = cmd.Flags().GetStringSlice("group")
			if err := users.AddUser(path, nu); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s to %s\n", args[0], path)
			return nil
		},
	}
	add.Flags().String("name", "", "display name")
	add.Flags().String("email", "", "email address")
	add.Flags().String("phone", "", "phone number in E.164 form, e.g. +15551234567")
	add.Flags().StringSlice("group", nil, "group (repeat or comma-separate)")
	add.Flags().String("password", "", "the password (prefer the prompt or stdin: flags show in process lists)")

	passwd := &cobra.Command{
		Use: "passwd <name>", Short: "Sets a user's password (this ends their sessions)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := usersFilePath(cmd)
			if err != nil {
				return err
			}
			pw, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), true)
			if err != nil {
				return err
			}
			h, err := users.Hash(pw, users.Algorithm("argon2id"))
			if err != nil {
				return err
			}
			if err := users.SetPassword(path, args[0], h); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed in %s\n", args[0], path)
			return nil
		},
	}

	disable := &cobra.Command{
		Use: "disable <name>", Short: "Disables a user (or enables with --enable)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := usersFilePath(cmd)
			if err != nil {
				return err
			}
			enable, _ := cmd.Flags().GetBool("enable")
			if err := users.SetDisabled(path, args[0], !enable); err != nil {
				return err
			}
			state := "disabled"
			if enable {
				state = "enabled"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s in %s\n", args[0], state, path)
			return nil
		},
	}
	disable.Flags().Bool("enable", false, "enable the user again")

	c.AddCommand(list, add, passwd, disable)
	return c
}

// adminFlags adds the flags that locate the running server's admin endpoint.
func adminFlags(c *cobra.Command) {
	c.PersistentFlags().String("config", "", "the Caddyfile, to find its admin address")
	c.PersistentFlags().String("adapter", "caddyfile", "the config adapter of --config")
	c.PersistentFlags().String("address", "", "the admin endpoint (default: from --config, else localhost:2019)")
}

// adminAddress is the running server's admin endpoint, from the flags.
func adminAddress(cmd *cobra.Command) (string, error) {
	addr, _ := cmd.Flags().GetString("address")
	cfg, _ := cmd.Flags().GetString("config")
	adapter, _ := cmd.Flags().GetString("adapter")
	return caddycmd.DetermineAdminAPIAddress(addr, nil, cfg, adapter)
}

// adminErr explains a failed admin request: an answer of the server as it
// is, no answer with a hint at the address.
func adminErr(err error, addr string) error {
	if strings.Contains(err.Error(), "caddy responded with error") {
		return err
	}
	return fmt.Errorf("%w (is Caddy running with its admin endpoint at %s?)", err, addr)
}

// adminCall sends one request to the running server's twostep admin API
// and returns the body of its answer, which must have the status want: the
// API's own, not any success of whatever answers at the address (another
// web server, a redirect followed as a GET), which would have the command
// report a revocation that never happened.
func adminCall(cmd *cobra.Command, method, path, body string, want int) ([]byte, error) {
	adminAddr, err := adminAddress(cmd)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	res, err := caddycmd.AdminAPIRequest(adminAddr, method, path, nil, rd)
	if err != nil {
		return nil, adminErr(err, adminAddr)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err == nil && res.StatusCode != want {
		err = fmt.Errorf("unexpected answer from %s: %s (is it Caddy's admin endpoint, with twostep?)", adminAddr, res.Status)
	}
	return b, err
}

func devicesCmd() *cobra.Command {
	c := &cobra.Command{Use: "devices", Short: "Lists and revokes users' trusted browsers"}
	adminFlags(c)
	list := &cobra.Command{
		Use: "list <user>", Short: "Lists a user's trusted browsers", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := adminCall(cmd, "GET", "/twostep/users/"+url.PathEscape(args[0])+"/devices", "", http.StatusOK)
			if err != nil {
				return err
			}
			var list []account.DeviceView
			if err := json.Unmarshal(body, &list); err != nil {
				return fmt.Errorf("unexpected answer: %s", body)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tBROWSER\tTRUSTED\tLAST USED\tIP")
			for _, d := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.Label, d.Created.Format("2006-01-02 15:04"), d.LastUsed.Format("2006-01-02 15:04"), d.IP)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use: "revoke <user> [<id>]", Short: "Revokes one trusted browser of a user, or (without an id) all of them", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			all, _ := cmd.Flags().GetBool("all")
			path := "/twostep/users/" + url.PathEscape(args[0]) + "/devices"
			if len(args) == 2 {
				if all {
					return errors.New("give a device id or --all, not both")
				}
				path += "/" + url.PathEscape(args[1])
			}
			if _, err := adminCall(cmd, "DELETE", path, "", http.StatusNoContent); err != nil {
				return err
			}
			if len(args) == 2 {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked trusted browser %s of %s\n", args[1], args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked every trusted browser of %s\n", args[0])
			}
			return nil
		},
	}
	revoke.Flags().Bool("all", false, "revoke every trusted browser of the user (the same as giving no id)")
	c.AddCommand(list, revoke)
	return c
}

func resetCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "reset-2sv <user>", Short: "Turns two-step off for a user and removes every method, device and session", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := adminCall(cmd, "POST", "/twostep/users/"+url.PathEscape(args[0])+"/reset-2sv", "", http.StatusNoContent); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "two-step verification reset for %s\n", args[0])
			return nil
		},
	}
	adminFlags(c)
	return c
}

func recoveryCmd() *cobra.Command {
	c := &cobra.Command{Use: "recovery", Short: "Lists and decides account recovery requests"}
	adminFlags(c)
	list := &cobra.Command{
		Use: "list", Short: "Lists recovery requests, oldest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := adminCall(cmd, "GET", "/twostep/recovery", "", http.StatusOK)
			if err != nil {
				return err
			}
			var list []account.Recovery
			if err := json.Unmarshal(body, &list); err != nil {
				return fmt.Errorf("unexpected answer: %s", body)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tCREATED\tDOCUMENT\tSTATUS\tAPPROVALS")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", r.ID, r.User, r.Created.Format("2006-01-02 15:04"), r.DocumentType, r.Status, len(r.Approvals))
			}
			return tw.Flush()
		},
	}
	show := &cobra.Command{
		Use: "show <id>", Short: "Shows one request", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := adminCall(cmd, "GET", "/twostep/recovery/"+url.PathEscape(args[0]), "", http.StatusOK)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(body, '\n'))
			return err
		},
	}
	decide := func(decision string) *cobra.Command {
		d := &cobra.Command{
			Use: decision + " <id>", Short: strings.ToUpper(decision[:1]) + decision[1:] + "s a request (as one reviewer)", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				reason, _ := cmd.Flags().GetString("reason")
				if _, err := adminCall(cmd, "POST", "/twostep/recovery/"+url.PathEscape(args[0])+"/"+decision, reason, http.StatusNoContent); err != nil {
					return err
				}
				done := map[string]string{"approve": "approved", "deny": "denied"}[decision]
				// Say where the request stands now (an approval may be one of several).
				body, err := adminCall(cmd, "GET", "/twostep/recovery/"+url.PathEscape(args[0]), "", http.StatusOK)
				var rec struct {
					Status    string   `json:"status"`
					Approvals []string `json:"approvals"`
				}
				if err != nil || json.Unmarshal(body, &rec) != nil || rec.Status == "" {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", done, args[0])
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: the request is %s", done, args[0], rec.Status)
				if rec.Status == "pending" {
					fmt.Fprintf(cmd.OutOrStdout(), " (%d approval(s) so far)", len(rec.Approvals))
				}
				fmt.Fprintln(cmd.OutOrStdout())
				return nil
			},
		}
		d.Flags().String("reason", "", "the reason, sent to the user (required to deny)")
		return d
	}
	c.AddCommand(list, show, decide("approve"), decide("deny"))
	return c
}

func backupCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "backup <file>",
		Short: "Writes a consistent copy of the running server's embedded store to a new file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := backupTo(cmd, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", args[0], n)
			return nil
		},
	}
	adminFlags(c)
	return c
}

// backupTo downloads the backup into file, which must not exist: first
// into file.partial, renamed when complete and checked to open as a store.
func backupTo(cmd *cobra.Command, file string) (int64, error) {
	if _, err := os.Lstat(file); err == nil {
		return 0, fmt.Errorf("%s exists: give a new file", file)
	}
	adminAddr, err := adminAddress(cmd)
	if err != nil {
		return 0, err
	}
	res, err := caddycmd.AdminAPIRequest(adminAddr, "GET", "/twostep/backup", nil, nil)
	if err != nil {
		return 0, adminErr(err, adminAddr)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("backup: unexpected answer from %s: %s (is it Caddy's admin endpoint, with twostep?)", adminAddr, res.Status)
	}
	tmp := file + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, res.Body)
	if err == nil && res.ContentLength >= 0 && n != res.ContentLength {
		err = fmt.Errorf("the copy was cut off after %d of %d bytes", n, res.ContentLength)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = bolt.Check(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

func compactCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compact <store file> <new file>",
		Short: "Writes a store file without its free space (Caddy stopped, or a backup)",
		Long: `
Writes the embedded store file to a new file without the space of deleted
records, which a store file keeps (it never shrinks by itself). The store
file must not be in use: stop Caddy first, or compact a backup. To shrink
the live store, stop Caddy, compact, and put the new file in place of the
old one.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			before, after, err := bolt.Compact(args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d bytes (%s had %d)\n", args[1], after, args[0], before)
			return nil
		},
	}
}

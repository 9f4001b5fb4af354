import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = resolve(fileURLToPath(new URL('../../', import.meta.url)));

/** Every Markdown page a reader of the repository follows links from. */
function markdownPages(): string[] {
  const docs = readdirSync(join(repo, 'docs')).filter((name) => name.endsWith('.md')).map((name) => join('docs', name));
  const blueprints = readdirSync(join(repo, 'blueprints'))
    .map((name) => join('blueprints', name, 'README.md'))
    .filter((path) => existsSync(join(repo, path)));
  return ['README.md', 'docs/screenshots/README.md', 'lib/infra/README.md', ...docs, ...blueprints];
}

/** The page's text without fenced code blocks (their brackets are code, not links). */
function prose(page: string): string {
  return readFileSync(join(repo, page), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
}

/** Relative link targets of `[text](target)`, in order; web links and mail addresses left out. */
function relativeLinks(page: string): string[] {
  return [...prose(page).matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1] as string)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to dashes. */
function headingAnchors(path: string): Set<string> {
  const text = readFileSync(path, 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  const anchors = new Set<string>();
  for (const match of text.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = (match[1] as string).toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replace(/ /g, '-');
    let anchor = base;
    for (let n = 1; anchors.has(anchor); n++) anchor = `${base}-${n}`;
    anchors.add(anchor);
  }
  return anchors;
}

/** What is wrong with one link of `page`, or undefined. */
function linkProblem(page: string, target: string): string | undefined {
  const [pathPart = '', anchor] = target.split('#');
  const file = pathPart === '' ? join(repo, page) : resolve(repo, dirname(page), decodeURIComponent(pathPart));
  const inRepo = relative(repo, file);
  if (inRepo.startsWith('..') || inRepo.startsWith(sep)) return `${page}: ${target} points outside the repository`;
  if (!existsSync(file)) return `${page}: ${target} does not exist`;
  if (anchor && file.endsWith('.md') && statSync(file).isFile() && !headingAnchors(file).has(anchor)) {
    return `${page}: ${target} names no heading of ${inRepo}`;
  }
  return undefined;
}

describe('the documentation', () => {
  it('links only to files and headings that exist in the repository', () => {
    const pages = markdownPages();
    const links = pages.flatMap((page) => relativeLinks(page).map((target) => ({ page, target })));
    expect(links.length).toBeGreaterThan(30);
    expect(links.map(({ page, target }) => linkProblem(page, target)).filter((problem) => problem !== undefined)).toEqual([]);
  });

  it('tells a broken link, a link out of the repository and a missing heading apart', () => {
    expect(linkProblem('docs/user-guide.md', 'screenshots/upload.png')).toBeUndefined();
    expect(linkProblem('docs/user-guide.md', 'screenshots/nothing.png')).toMatch(/does not exist/);
    expect(linkProblem('docs/deploy.md', '../../shared/DESIGN.md')).toMatch(/outside the repository/);
    expect(linkProblem('README.md', 'docs/user-guide.md#no-such-heading')).toMatch(/names no heading/);
    expect(linkProblem('README.md', 'docs/user-guide.md#the-web-interface-locally')).toBeUndefined();
  });

  it('shows every screenshot it keeps, from the user guide', () => {
    const shots = readdirSync(join(repo, 'docs', 'screenshots')).filter((name) => name.endsWith('.png'));
    expect(shots.length).toBeGreaterThan(0);
    const linked = new Set(relativeLinks('docs/user-guide.md').filter((target) => target.startsWith('screenshots/')).map((target) => target.slice('screenshots/'.length)));
    expect(shots.filter((shot) => !linked.has(shot))).toEqual([]);
  });

  it('names no file outside the repository in docs/', () => {
    const pages = readdirSync(join(repo, 'docs')).filter((name) => name.endsWith('.md'));
    const outside = pages.flatMap((name) =>
      [...readFileSync(join(repo, 'docs', name), 'utf8').matchAll(/(?:\.\.\/)+shared\/|\/work\/|DESIGN\.md|STYLE\.md/g)].map((match) => `docs/${name}: ${match[0]}`),
    );
    expect(outside).toEqual([]);
  });
});

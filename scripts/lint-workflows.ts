import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * The sandbox rule for workflows/: workflow code is replayed, so it may import only the
 * workflow SDK, other workflow files and pure domain code at run time; everything else
 * (activities, src/, Node builtins, I/O libraries) only as `import type`. It may not
 * touch `process`, `require` or network and file APIs. The Temporal bundler catches some
 * of this at worker start; this catches it at `npm test`, with the file and line.
 */

const RUNTIME_IMPORTS_ALLOWED = [/^@temporalio\/workflow$/, /^@temporalio\/common$/, /^\.\.?\//];
const RELATIVE_ROOTS_ALLOWED = ['workflows', 'domain'];
const FORBIDDEN_GLOBALS = new Set(['process', 'require', 'fetch', 'Buffer', '__dirname', '__filename', 'XMLHttpRequest', 'WebSocket']);

export interface Violation {
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

export function lintWorkflowSource(file: string, text: string, repoRoot: string): Violation[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const violations: Violation[] = [];
  const declared = declaredNames(source);
  const report = (node: ts.Node, message: string) =>
    violations.push({ file, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, message });

  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const specifier = node.moduleSpecifier.text;
      const typeOnly = ts.isImportDeclaration(node) ? isTypeOnlyImport(node) : node.isTypeOnly;
      if (!typeOnly) {
        if (!RUNTIME_IMPORTS_ALLOWED.some((allowed) => allowed.test(specifier))) {
          report(node, `"${specifier}" may only be imported with \`import type\` in workflow code`);
        } else if (specifier.startsWith('.')) {
          const target = path.relative(repoRoot, path.resolve(path.dirname(file), specifier));
          if (!RELATIVE_ROOTS_ALLOWED.includes(target.split(path.sep)[0]!)) {
            report(node, `"${specifier}" is outside workflows/ and domain/: use \`import type\` or move the pure code`);
          }
        }
      }
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      report(node, 'dynamic import() is not allowed in workflow code');
    }
    if (ts.isIdentifier(node) && FORBIDDEN_GLOBALS.has(node.text) && !declared.has(node.text) && isGlobalReference(node)) {
      report(node, `\`${node.text}\` is not available in the workflow sandbox; pass what you need in the workflow input`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return violations;
}

function isTypeOnlyImport(node: ts.ImportDeclaration): boolean {
  const clause = node.importClause;
  if (!clause) return false; // a side-effect import runs code
  if (clause.isTypeOnly) return true;
  const bindings = clause.namedBindings;
  return !clause.name && !!bindings && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly);
}

/** Names the file declares itself (variables, parameters, functions), which shadow globals. */
function declaredNames(source: ts.SourceFile): Set<string> {
  const names = new Set<string>();
  const visit = (node: ts.Node) => {
    if ((ts.isVariableDeclaration(node) || ts.isParameter(node) || ts.isFunctionDeclaration(node)) && node.name && ts.isIdentifier(node.name)) {
      names.add(node.name.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return names;
}

/** A bare identifier used as a value, not a property name, declaration or type. */
function isGlobalReference(node: ts.Identifier): boolean {
  const parent = node.parent;
  if (ts.isPropertyAccessExpression(parent) && parent.name === node) return false;
  if (ts.isPropertyAssignment(parent) && parent.name === node) return false;
  if (ts.isPropertySignature(parent) || ts.isPropertyDeclaration(parent) || ts.isMethodDeclaration(parent)) return false;
  if (ts.isVariableDeclaration(parent) || ts.isParameter(parent) || ts.isFunctionDeclaration(parent)) return false;
  if (ts.isImportSpecifier(parent) || ts.isExportSpecifier(parent) || ts.isTypeReferenceNode(parent)) return false;
  if (ts.isQualifiedName(parent)) return false;
  return true;
}

export function lintWorkflows(repoRoot: string): Violation[] {
  const dir = path.join(repoRoot, 'workflows');
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  return files.flatMap((f) => {
    const file = path.join(dir, f);
    return lintWorkflowSource(file, readFileSync(file, 'utf8'), repoRoot);
  });
}

if (require.main === module) {
  const repoRoot = path.resolve(__dirname, '..');
  const violations = lintWorkflows(repoRoot);
  for (const v of violations) process.stderr.write(`${path.relative(repoRoot, v.file)}:${v.line}: ${v.message}\n`);
  if (violations.length > 0) process.exit(1);
  process.stdout.write('workflows/: sandbox rule holds\n');
}
